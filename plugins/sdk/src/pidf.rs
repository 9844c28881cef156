//! PIDF-LO location documents (RFC 4119, with the shapes of RFC 5491) from the CAMARA
//! `locationDetails` object, for emergency calls (RFC 6442: the document travels in the INVITE
//! body and a `Geolocation` header points at it).

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// CAMARA `locationDetails.shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Ellipsoid,
}

/// CAMARA `locationDetails.confidence.pdf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pdf {
    Normal,
    Uniform,
}

/// CAMARA `locationDetails`: WGS84 degrees, metres; which optional members a shape needs is
/// checked by [`pidf_lo`].
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub shape: Shape,
    pub latitude: f64,
    pub longitude: f64,
    pub radius: Option<f64>,
    pub z_axis: Option<f64>,
    pub semi_major_axis: Option<f64>,
    pub semi_minor_axis: Option<f64>,
    pub vertical_axis: Option<f64>,
    pub orientation: Option<f64>,
    /// Percent and distribution.
    pub confidence: Option<(f64, Pdf)>,
    pub method: Option<String>,
    pub timestamp: Option<String>,
}

impl Location {
    /// A circle of `radius` metres around a point; the rest unset.
    pub fn circle(latitude: f64, longitude: f64, radius: f64) -> Self {
        Location {
            shape: Shape::Circle,
            latitude,
            longitude,
            radius: Some(radius),
            z_axis: None,
            semi_major_axis: None,
            semi_minor_axis: None,
            vertical_axis: None,
            orientation: None,
            confidence: None,
            method: None,
            timestamp: None,
        }
    }
}

fn number(value: Option<f64>, field: &str) -> Result<f64, String> {
    value.filter(|n| n.is_finite()).ok_or_else(|| format!("locationDetails.coordinates.{field} must be a number"))
}

/// The PIDF-LO document for `location` of `entity` (a `pres:` or `sip:` URI of the caller).
pub fn pidf_lo(location: &Location, entity: &str) -> Result<String, String> {
    let (latitude, longitude) =
        (number(Some(location.latitude), "latitude")?, number(Some(location.longitude), "longitude")?);
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err("locationDetails.coordinates are outside WGS84 latitude/longitude".into());
    }
    let shape = match location.shape {
        Shape::Circle => format!(
            "<gs:Circle srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>{latitude} {longitude}</gml:pos>\
             <gs:radius uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:radius></gs:Circle>",
            number(location.radius, "radius")?
        ),
        Shape::Ellipsoid => format!(
            "<gs:Ellipsoid srsName=\"urn:ogc:def:crs:EPSG::4979\"><gml:pos>{latitude} {longitude} {}</gml:pos>\
             <gs:semiMajorAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:semiMajorAxis>\
             <gs:semiMinorAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:semiMinorAxis>\
             <gs:verticalAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:verticalAxis>\
             <gs:orientation uom=\"urn:ogc:def:uom:EPSG::9102\">{}</gs:orientation></gs:Ellipsoid>",
            number(location.z_axis, "zAxis")?,
            number(location.semi_major_axis, "semiMajorAxis")?,
            number(location.semi_minor_axis, "semiMinorAxis")?,
            number(location.vertical_axis, "verticalAxis")?,
            number(location.orientation, "orientation")?
        ),
    };
    let confidence = match location.confidence {
        Some((value, pdf)) if (0.0..=100.0).contains(&value) => {
            let pdf = match pdf {
                Pdf::Normal => "normal",
                Pdf::Uniform => "uniform",
            };
            format!("<con:confidence pdf=\"{pdf}\">{value}</con:confidence>")
        }
        Some(_) => return Err("locationDetails.confidence needs a value 0..100".into()),
        None => String::new(),
    };
    let method = location.method.as_deref().map(|m| format!("<gp:method>{}</gp:method>", xml_escape(m)));
    let timestamp = location.timestamp.as_deref().map(|t| format!("<dm:timestamp>{}</dm:timestamp>", xml_escape(t)));
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" \
         xmlns:gml=\"http://www.opengis.net/gml\" xmlns:gs=\"http://www.opengis.net/pidflo/1.0\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:con=\"urn:ietf:params:xml:ns:geopriv:conf\" \
         entity=\"{}\">\r\n<dm:device id=\"caller\"><gp:geopriv><gp:location-info>{shape}{confidence}</gp:location-info>\
         <gp:usage-rules/>{}</gp:geopriv>{}</dm:device>\r\n</presence>\r\n",
        xml_escape(entity),
        method.unwrap_or_default(),
        timestamp.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circle_becomes_a_geopriv_circle_with_confidence_method_and_time() {
        let location = Location {
            method: Some("GPS".into()),
            confidence: Some((88.0, Pdf::Normal)),
            timestamp: Some("2025-10-06T19:32:10Z".into()),
            ..Location::circle(40.7128, -74.006, 50.0)
        };
        let doc = pidf_lo(&location, "pres:+818000000001@operator.com").unwrap();
        assert!(doc.contains("entity=\"pres:+818000000001@operator.com\""), "{doc}");
        assert!(doc.contains("<gs:Circle srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>40.7128 -74.006</gml:pos>"));
        assert!(doc.contains("<gs:radius uom=\"urn:ogc:def:uom:EPSG::9001\">50</gs:radius>"));
        assert!(doc.contains("<con:confidence pdf=\"normal\">88</con:confidence>"));
        assert!(
            doc.contains("<gp:method>GPS</gp:method>")
                && doc.contains("<dm:timestamp>2025-10-06T19:32:10Z</dm:timestamp>")
        );
    }

    #[test]
    fn an_ellipsoid_carries_its_axes_and_bad_input_is_refused() {
        let ellipsoid = Location {
            shape: Shape::Ellipsoid,
            radius: None,
            z_axis: Some(3.0),
            semi_major_axis: Some(4.0),
            semi_minor_axis: Some(5.0),
            vertical_axis: Some(6.0),
            orientation: Some(7.0),
            ..Location::circle(1.0, 2.0, 0.0)
        };
        let doc = pidf_lo(&ellipsoid, "pres:x").unwrap();
        assert!(doc.contains("<gml:pos>1 2 3</gml:pos>") && doc.contains(">7</gs:orientation>"), "{doc}");
        assert!(pidf_lo(&Location { orientation: None, ..ellipsoid }, "pres:x").is_err(), "no orientation");
        assert!(pidf_lo(&Location::circle(91.0, 2.0, 1.0), "pres:x").is_err());
        assert!(pidf_lo(&Location { radius: None, ..Location::circle(1.0, 2.0, 1.0) }, "pres:x").is_err(), "no radius");
        let unsure = Location { confidence: Some((101.0, Pdf::Uniform)), ..Location::circle(1.0, 2.0, 1.0) };
        assert!(pidf_lo(&unsure, "pres:x").is_err());
        let escaped =
            pidf_lo(&Location { method: Some("<x>".into()), ..Location::circle(1.0, 2.0, 1.0) }, "a\"b").unwrap();
        assert!(escaped.contains("&lt;x&gt;") && escaped.contains("entity=\"a&quot;b\""), "{escaped}");
    }
}
