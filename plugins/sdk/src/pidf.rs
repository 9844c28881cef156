//! PIDF-LO location documents (RFC 4119, with the shapes of RFC 5491) from the CAMARA
//! `locationDetails` object, for emergency calls (RFC 6442: the document travels in the INVITE
//! body and a `Geolocation` header points at it).

use serde_json::Value;

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn number(object: &Value, field: &str) -> Result<f64, String> {
    object
        .get(field)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("locationDetails.coordinates.{field} must be a number"))
}

/// The PIDF-LO document for `location` (a CAMARA `LocationDetails`) of `entity` (a `pres:` or
/// `sip:` URI of the caller).
pub fn pidf_lo(location: &Value, entity: &str) -> Result<String, String> {
    let coordinates = location.get("coordinates").ok_or("locationDetails.coordinates is required")?;
    let (latitude, longitude) = (number(coordinates, "latitude")?, number(coordinates, "longitude")?);
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err("locationDetails.coordinates are outside WGS84 latitude/longitude".into());
    }
    let shape = match location.get("shape").and_then(Value::as_str).unwrap_or("Circle") {
        "Circle" => format!(
            "<gs:Circle srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>{latitude} {longitude}</gml:pos>\
             <gs:radius uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:radius></gs:Circle>",
            number(coordinates, "radius")?
        ),
        "Ellipsoid" => format!(
            "<gs:Ellipsoid srsName=\"urn:ogc:def:crs:EPSG::4979\"><gml:pos>{latitude} {longitude} {}</gml:pos>\
             <gs:semiMajorAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:semiMajorAxis>\
             <gs:semiMinorAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:semiMinorAxis>\
             <gs:verticalAxis uom=\"urn:ogc:def:uom:EPSG::9001\">{}</gs:verticalAxis>\
             <gs:orientation uom=\"urn:ogc:def:uom:EPSG::9102\">{}</gs:orientation></gs:Ellipsoid>",
            number(coordinates, "zAxis")?,
            number(coordinates, "semiMajorAxis")?,
            number(coordinates, "semiMinorAxis")?,
            number(coordinates, "verticalAxis")?,
            number(coordinates, "orientation")?
        ),
        other => return Err(format!("locationDetails.shape {other:?} is not Circle or Ellipsoid")),
    };
    let confidence = match location.get("confidence") {
        Some(c) => {
            let value = c.get("value").and_then(Value::as_f64).filter(|v| (0.0..=100.0).contains(v));
            let pdf = c.get("pdf").and_then(Value::as_str).unwrap_or("normal");
            match (value, pdf) {
                (Some(value), "normal" | "uniform") => {
                    format!("<con:confidence pdf=\"{pdf}\">{value}</con:confidence>")
                }
                _ => return Err("locationDetails.confidence needs pdf normal|uniform and a value 0..100".into()),
            }
        }
        None => String::new(),
    };
    let method =
        location.get("method").and_then(Value::as_str).map(|m| format!("<gp:method>{}</gp:method>", xml_escape(m)));
    let timestamp = location
        .get("timestamp")
        .and_then(Value::as_str)
        .map(|t| format!("<dm:timestamp>{}</dm:timestamp>", xml_escape(t)));
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
    use serde_json::json;

    #[test]
    fn a_circle_becomes_a_geopriv_circle_with_confidence_method_and_time() {
        let location = json!({
            "shape": "Circle",
            "coordinates": {"latitude": 40.7128, "longitude": -74.006, "radius": 50},
            "method": "GPS",
            "confidence": {"pdf": "normal", "value": 88},
            "timestamp": "2025-10-06T19:32:10Z"
        });
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
        let coordinates = json!({"latitude": 1, "longitude": 2, "zAxis": 3, "semiMajorAxis": 4, "semiMinorAxis": 5, "verticalAxis": 6, "orientation": 7});
        let doc = pidf_lo(&json!({"shape": "Ellipsoid", "coordinates": coordinates}), "pres:x").unwrap();
        assert!(doc.contains("<gml:pos>1 2 3</gml:pos>") && doc.contains(">7</gs:orientation>"), "{doc}");
        assert!(
            pidf_lo(&json!({"shape": "Polygon", "coordinates": {"latitude": 1, "longitude": 2}}), "pres:x").is_err()
        );
        assert!(pidf_lo(&json!({"coordinates": {"latitude": 91, "longitude": 2, "radius": 1}}), "pres:x").is_err());
        assert!(pidf_lo(&json!({"coordinates": {"latitude": 1, "longitude": 2}}), "pres:x").is_err(), "no radius");
        let escaped =
            pidf_lo(&json!({"coordinates": {"latitude": 1, "longitude": 2, "radius": 1}, "method": "<x>"}), "a\"b")
                .unwrap();
        assert!(escaped.contains("&lt;x&gt;") && escaped.contains("entity=\"a&quot;b\""), "{escaped}");
    }
}
