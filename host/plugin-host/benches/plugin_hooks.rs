//! What one plugin hook costs: a call of each default plugin through the host, beside the same
//! decision made by native Rust, and the same call taken apart.
//!
//! `hooks/*/wasm` goes through the public API exactly as the gateway does: every call gets a fresh
//! `Store` and instance from the `InstancePre`, so instantiation, the WASI context, the call and
//! the teardown are all in the figure. `hooks/*/native` is the default plugin's logic compiled
//! into the host (the `camara-plugin-sdk` helpers plus serde_json), on the same inputs, so the gap
//! between the two is the price of isolation.
//!
//! With `BENCH_PLUGINS_BASELINE=<git rev>`, the default plugins of that commit are built too
//! (see `baseline.rs`) and measured through the same host in the same run (`wasm.<rev>`), for the
//! before/after ratio of a change to the plugins or their WIT (0.1.0 there, 0.2.0 now).
//!
//! `anatomy/*` uses a copy of the host's engine and store (see `replica.rs`) to measure the fixed
//! parts of a call (store, instantiation) separately.
//!
//! Run: `cargo bench -p camara-plugin-host --bench plugin_hooks` (see BENCHMARKS.md).

#[path = "plugin_hooks/baseline.rs"]
mod baseline;
#[path = "plugin_hooks/replica.rs"]
mod replica;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use camara_plugin_harness::fixtures;
use camara_plugin_host::{
    AuthorizationPlugin, MappingPlugin, PluginError, PluginLimits, PluginRuntime, PluginSpec, RoutingPlugin,
    RuntimeConfig, WasmSource, authorization, mapping, routing,
};
use criterion::{Criterion, criterion_group, criterion_main};
use replica::{Allocator, Replica, Wasi};
use tokio::runtime::Runtime;

const SUBSCRIBER: &str = "+818000000001";
const DEVICE: &str = "device-7f3c";
const SESSION_STATUS: &str = "org.camaraproject.webrtc-events.v0.session-status";

/// The inputs, built once: the host builds them per request in both the wasm and the native
/// case, so their construction belongs to neither figure.
struct Inputs {
    authorize: authorization::AuthorizationRequest,
    /// The same token with only the phone number: what the claims cost shows in the difference.
    authorize_min_claims: authorization::AuthorizationRequest,
    call: mapping::CallContext,
    ringing: mapping::SipEvent,
    trying: mapping::SipEvent,
    outgoing: mapping::OutgoingCall,
    network: mapping::NetworkContext,
    event: routing::Event,
    subscriptions: Vec<routing::Subscription>,
}

impl Inputs {
    fn new() -> Inputs {
        // A three-legged access token as an operator's authorization server issues it for a
        // WebRTC client: ~360 bytes of claims, the scope present, the subscriber's number.
        let claims = serde_json::json!({
            "iss": "https://auth.operator.example",
            "sub": "a2c1d0b6-5f3e-4f1a-9a57-2a8f2c6b7d10",
            "aud": ["https://webrtc-gateway.operator.example"],
            "exp": 1_767_225_600,
            "iat": 1_767_222_000,
            "client_id": "webrtc-app-7f3c",
            "scope": "openid webrtc-call-handling:sessions:create webrtc-call-handling:sessions:read",
            "phone_number": SUBSCRIBER,
            "jti": "8d2f1a64-0c1b-4a53-b8a0-7d6f2e9c4b21"
        });
        let mut authorize = fixtures::authorization_request("webrtc-call-handling", "createSession", claims);
        // originatorAddress first, as the gateway passes it: the subscriber is calling.
        authorize.request.addresses = vec![format!("tel:{SUBSCRIBER}"), "tel:+818000000002".into()];
        let mut authorize_min_claims = authorize.clone();
        authorize_min_claims.claims.all_claims =
            serde_json::json!({ "phone_number": SUBSCRIBER }).as_object().cloned().unwrap_or_default();

        // Four subscriptions, one of which wants the event: the others differ in device, owner
        // and type, so each clause of the filter is exercised.
        let sub = |id: &str, types: &[&str], device: &str, owner: &str| {
            fixtures::subscription(id, &format!("https://app.example/notify/{id}"), types, device, owner)
        };
        let subscriptions = vec![
            sub("sub-1", &[SESSION_STATUS], DEVICE, SUBSCRIBER),
            sub("sub-2", &[SESSION_STATUS], "device-other", SUBSCRIBER),
            sub("sub-3", &[SESSION_STATUS], DEVICE, "+818000000009"),
            sub("sub-4", &["org.camaraproject.webrtc-events.v0.registration-status"], DEVICE, SUBSCRIBER),
        ];
        Inputs {
            authorize,
            authorize_min_claims,
            ringing: fixtures::invite_response(180, "Ringing"),
            trying: fixtures::invite_response(100, "Trying"),
            outgoing: fixtures::outgoing_call(&format!("tel:{SUBSCRIBER}"), "tel:+818000000002"),
            call: fixtures::outgoing_call_context(),
            network: fixtures::network_context(),
            event: fixtures::session_status_event("ms-1234", DEVICE, SUBSCRIBER),
            subscriptions,
        }
    }
}

/// The default plugins' decisions as native Rust: what the gateway would run without plugins.
/// Mirrors `plugins/*-default/src/lib.rs`; the outputs are checked equal before measuring.
mod native {
    use camara_plugin_host::{authorization, mapping, routing};
    use camara_plugin_sdk::{address, scopes, status};

    /// The operator's configuration, looked up as the guest's `config::get` does (none set).
    fn config(config: &[(String, String)], key: &str) -> Option<String> {
        config.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn deny(code: &str, message: String) -> authorization::Decision {
        authorization::Decision::Deny(authorization::CamaraError { status: 403, code: code.into(), message })
    }

    /// The configured claim (OIDC's often lacks the plus sign), else a `sub` that is a number.
    fn phone_number(req: &authorization::AuthorizationRequest, claim: &str) -> Option<String> {
        if let Some(n) = req.claims.all_claims.get(claim).and_then(|v| v.as_str()) {
            let n = if n.starts_with('+') { n.to_string() } else { format!("+{n}") };
            return address::is_e164(&n).then_some(n);
        }
        req.claims.subject.clone().filter(|s| address::is_e164(s))
    }

    pub fn authorize(req: &authorization::AuthorizationRequest, cfg: &[(String, String)]) -> authorization::Decision {
        let op = &req.operation;
        let Some(requirement) = scopes::requirement(op.api.as_str(), &op.operation_id) else {
            return deny("PERMISSION_DENIED", format!("Unknown operation {}.{}", op.api.as_str(), op.operation_id));
        };
        if config(cfg, "require-scopes").as_deref() != Some("false") {
            let missing = scopes::missing(&requirement, &req.claims.scopes, &req.request.event_types);
            if !missing.is_empty() {
                return deny("PERMISSION_DENIED", format!("missing scope {}.", missing.join(", ")));
            }
        }
        let claim = config(cfg, "phone-number-claim").unwrap_or_else(|| "phone_number".into());
        let number = phone_number(req, &claim);
        let Some(number) = number else {
            return deny("INVALID_TOKEN_CONTEXT", "a three-legged token is required.".into());
        };
        if op.operation_id == "createSession"
            && let Some(originator) = req.request.addresses.first()
            && originator != address::ANONYMOUS
            && address::phone_number(originator) != Some(number.as_str())
        {
            return deny("INVALID_TOKEN_CONTEXT", "originatorAddress is not consistent with access token.".into());
        }
        authorization::Decision::Allow(authorization::Subscriber {
            phone_number: Some(number),
            subject: req.claims.subject.clone(),
        })
    }

    pub fn map_sip_event(event: &mapping::SipEvent) -> Option<mapping::StatusUpdate> {
        let update = |(status, reason): (status::Status, String)| mapping::StatusUpdate { status, reason };
        match event {
            mapping::SipEvent::InviteResponse(r) => {
                status::for_invite_response(r.status_code, &r.reason_phrase).map(update)
            }
            _ => unreachable!("only invite responses are measured"),
        }
    }

    pub fn map_outgoing_call(
        call: &mapping::OutgoingCall,
        net: &mapping::NetworkContext,
        cfg: &[(String, String)],
    ) -> Result<mapping::InvitePlan, mapping::CamaraError> {
        let invalid = |message| mapping::CamaraError { status: 400, code: "INVALID_ARGUMENT".into(), message };
        let name_addr = |name: Option<&String>, uri| mapping::NameAddr {
            display_name: name.filter(|n| !n.is_empty()).cloned(),
            uri,
        };
        let home = config(cfg, "home-domain").unwrap_or_else(|| address::host_of(&net.local_host).to_string());
        let network = config(cfg, "network-domain")
            .or_else(|| net.next_hop.as_deref().map(|h| address::host_of(h).to_string()))
            .unwrap_or_else(|| address::host_of(&net.local_host).to_string());
        let request_uri = address::sip_uri(&call.receiver_address, &network).map_err(invalid)?;
        let to = name_addr(call.receiver_name.as_ref(), request_uri.clone());
        let (from, privacy) = if call.originator_address == address::ANONYMOUS {
            (
                mapping::NameAddr { display_name: Some("Anonymous".into()), uri: address::ANONYMOUS.into() },
                Some("id".into()),
            )
        } else {
            (
                name_addr(
                    call.originator_name.as_ref(),
                    address::sip_uri(&call.originator_address, &home).map_err(invalid)?,
                ),
                None,
            )
        };
        let p_asserted_identity = call
            .subscriber_phone_number
            .as_ref()
            .map(|n| name_addr(call.originator_name.as_ref(), format!("sip:{n}@{home};user=phone")));
        let emergency =
            call.call_type == mapping::CallType::Emergency || call.receiver_address.starts_with("urn:service:sos");
        let extra_headers = if emergency { vec![mapping::Pair::new("Priority", "emergency")] } else { Vec::new() };
        // The measured calls carry no location, so no PIDF-LO part.
        let body_parts = Vec::new();
        Ok(mapping::InvitePlan { request_uri, from, to, p_asserted_identity, privacy, extra_headers, body_parts })
    }

    fn same_if_both(a: &Option<String>, b: &Option<String>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The subscriptions the event goes to and the bodies POSTed to them: what the plugin and
    /// the host do between them for one event.
    pub fn route(event: &routing::Event, subscriptions: &[routing::Subscription]) -> Vec<String> {
        let Ok(cloudevent) = serde_json::from_str::<serde_json::Value>(&event.cloudevent_json) else {
            return Vec::new();
        };
        subscriptions
            .iter()
            .filter(|sub| {
                (sub.types.contains(&event.event_type)
                    || event.event_type == "org.camaraproject.webrtc-events.v0.subscription-ended")
                    && same_if_both(&sub.device_id, &event.device_id)
                    && same_if_both(&sub.owner_phone_number, &event.phone_number)
            })
            .map(|sub| {
                let mut body = cloudevent.clone();
                if let Some(data) = body.get_mut("data").and_then(|d| d.as_object_mut()) {
                    data.insert("subscriptionId".into(), sub.id.clone().into());
                }
                body.to_string()
            })
            .collect()
    }
}

/// The three default plugins, loaded through the public API as the gateway loads them.
struct Plugins {
    /// `current`, or the baseline's commit.
    label: String,
    authorization: AuthorizationPlugin,
    mapping: MappingPlugin,
    routing: RoutingPlugin,
}

impl Plugins {
    async fn load(runtime: &PluginRuntime, label: &str, wasm: [&[u8]; 3]) -> Plugins {
        let spec = |name: &str, wasm: &[u8]| PluginSpec {
            name: format!("{name}@{label}"),
            wasm: WasmSource::Bytes(wasm.into()),
            config: Vec::new(),
            limits: PluginLimits::default(),
        };
        Plugins {
            label: label.to_string(),
            authorization: AuthorizationPlugin::load(runtime, spec("authorization", wasm[0])).await.unwrap(),
            mapping: MappingPlugin::load(runtime, spec("api-mapping", wasm[1])).await.unwrap(),
            routing: RoutingPlugin::load(runtime, spec("notification-routing", wasm[2])).await.unwrap(),
        }
    }

    /// `route` and the bodies the host POSTs, as the gateway does for one event.
    async fn route(&self, event: &routing::Event, subscriptions: &[routing::Subscription]) -> Option<Vec<String>> {
        let deliveries = counted(self.routing.route(event, subscriptions)).await?;
        Some(deliveries.iter().map(|d| d.body(event)).collect())
    }
}

/// The current default plugins, and those of the baseline commit when one is asked for.
struct Host {
    runtime: PluginRuntime,
    sets: Vec<Plugins>,
}

impl Host {
    fn load(rt: &Runtime) -> Host {
        let baseline = std::env::var("BENCH_PLUGINS_BASELINE").ok().filter(|r| !r.is_empty()).map(|rev| {
            eprintln!("building the default plugins of {rev} for the baseline");
            baseline::build(&rev)
        });
        rt.block_on(async {
            let runtime = PluginRuntime::new(&RuntimeConfig::default()).expect("plugin runtime");
            let bundle = [
                camara_plugin_bundle::AUTHORIZATION.wasm,
                camara_plugin_bundle::API_MAPPING.wasm,
                camara_plugin_bundle::NOTIFICATION_ROUTING.wasm,
            ];
            let mut sets = vec![Plugins::load(&runtime, "current", bundle).await];
            if let Some(b) = &baseline {
                let [a, m, r] = &b.wasm;
                sets.push(Plugins::load(&runtime, &b.rev, [a, m, r]).await);
            }
            for set in &sets {
                eprintln!(
                    "plugins {}: WIT {} / {} / {}",
                    set.label,
                    set.authorization.wit_version().as_str(),
                    set.mapping.wit_version().as_str(),
                    set.routing.wit_version().as_str()
                );
            }
            Host { runtime, sets }
        })
    }
}

/// Fails the run if the wasm and native paths disagree, so neither side is measuring a shortcut.
fn same<T: serde::Serialize>(what: &str, wasm: &T, native: &T) {
    let (w, n) = (serde_json::to_value(wasm).unwrap(), serde_json::to_value(native).unwrap());
    assert_eq!(w, n, "{what}: the plugin and the native code decide differently");
}

fn runtime() -> Runtime {
    // The gateway's kind of runtime. `to_async` drives the whole timed loop in one `block_on`,
    // so no per-iteration scheduling is counted; the epoch ticker's yields (one per ms) are,
    // as they are in production.
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// Hook calls that failed while being measured. The host's deadline is wall-clock (100 ms), and
/// a benchmark niced under a parallel build can be descheduled past it mid-call; such a call is
/// counted and reported rather than aborting the run or passing unseen.
static FAILED_CALLS: AtomicUsize = AtomicUsize::new(0);

async fn counted<T>(call: impl Future<Output = Result<T, PluginError>>) -> Option<T> {
    call.await.inspect_err(|_| _ = FAILED_CALLS.fetch_add(1, Ordering::Relaxed)).ok()
}

/// Minor page faults of this process so far (field 10 of /proc/self/stat). A fresh instance's
/// first touches of its memory fault, and the teardown gives those pages back: per-call faults
/// show how much of a hook is memory management rather than wasm.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may contain spaces: count the fields after its closing parenthesis.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(7)).and_then(|f| f.parse().ok()).unwrap_or(0)
}

fn faults_per_call<F: Future>(rt: &Runtime, what: &str, mut call: impl FnMut() -> F) {
    const CALLS: u64 = 2000;
    rt.block_on(async {
        // Not counted: the first call in a fresh pool slot also maps the component's memory image.
        call().await;
        let before = minor_faults();
        for _ in 0..CALLS {
            black_box(call().await);
        }
        eprintln!("page faults per call, {what}: {:.1}", (minor_faults() - before) as f64 / CALLS as f64);
    });
}

fn hooks(c: &mut Criterion) {
    let rt = &runtime();
    let host = &Host::load(rt);
    let inputs = &Inputs::new();
    let no_config: &[(String, String)] = &[];
    eprintln!(
        "plugin runtime: pooling allocator {}; {} claims",
        if host.runtime.is_pooling() { "ACTIVE" } else { "NOT active (on-demand allocation)" },
        inputs.authorize.claims.all_claims.len()
    );

    rt.block_on(async {
        for set in &host.sets {
            let decision = set.authorization.authorize(&inputs.authorize).await.unwrap();
            assert!(
                matches!(decision, authorization::Decision::Allow(_)),
                "typical token must be allowed: {decision:?}"
            );
            same("authorize", &decision, &native::authorize(&inputs.authorize, no_config));
            let ringing = set.mapping.map_sip_event(&inputs.ringing, &inputs.call).await.unwrap();
            same("map_sip_event", &ringing, &native::map_sip_event(&inputs.ringing));
            let plan = set.mapping.map_outgoing_call(&inputs.outgoing, &inputs.call, &inputs.network).await.unwrap();
            same(
                "map_outgoing_call",
                &plan,
                &Ok(native::map_outgoing_call(&inputs.outgoing, &inputs.network, no_config).unwrap()),
            );
            let bodies = set.route(&inputs.event, &inputs.subscriptions).await.unwrap();
            assert_eq!(bodies.len(), 1, "exactly one subscription matches");
            let json = |b: &[String]| {
                b.iter().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()).collect::<Vec<_>>()
            };
            assert_eq!(
                json(&bodies),
                json(&native::route(&inputs.event, &inputs.subscriptions)),
                "route: {}",
                set.label
            );
        }
    });
    let current = &host.sets[0];
    faults_per_call(rt, "hooks authorize", || current.authorization.authorize(&inputs.authorize));
    faults_per_call(rt, "hooks route", || current.route(&inputs.event, &inputs.subscriptions));

    // `wasm` is the current plugins; `wasm.<rev>` the baseline's, in the same run.
    let name = |set: &Plugins| if set.label == "current" { "wasm".to_string() } else { format!("wasm.{}", set.label) };
    let mut g = c.benchmark_group("hooks/authorization.createSession");
    for set in &host.sets {
        g.bench_function(name(set), |b| {
            b.to_async(rt).iter(|| counted(set.authorization.authorize(black_box(&inputs.authorize))))
        });
    }
    g.bench_function("wasm.minimal_claims", |b| {
        b.to_async(rt).iter(|| counted(current.authorization.authorize(black_box(&inputs.authorize_min_claims))))
    });
    g.bench_function("native", |b| b.iter(|| native::authorize(black_box(&inputs.authorize), no_config)));
    g.finish();

    let mut g = c.benchmark_group("hooks/api-mapping.map_sip_event_180");
    for set in &host.sets {
        g.bench_function(name(set), |b| {
            b.to_async(rt).iter(|| counted(set.mapping.map_sip_event(black_box(&inputs.ringing), &inputs.call)))
        });
    }
    g.bench_function("native", |b| b.iter(|| native::map_sip_event(black_box(&inputs.ringing))));
    g.finish();

    let mut g = c.benchmark_group("hooks/api-mapping.map_outgoing_call");
    for set in &host.sets {
        g.bench_function(name(set), |b| {
            b.to_async(rt).iter(|| {
                counted(set.mapping.map_outgoing_call(black_box(&inputs.outgoing), &inputs.call, &inputs.network))
            })
        });
    }
    g.bench_function("native", |b| {
        b.iter(|| native::map_outgoing_call(black_box(&inputs.outgoing), &inputs.network, no_config))
    });
    g.finish();

    // Routing plus the bodies the host sends: the baseline's plugin built them, the current
    // one names subscriptions and the host builds them.
    let mut g = c.benchmark_group("hooks/notification-routing.route_1_of_4");
    for set in &host.sets {
        g.bench_function(name(set), |b| {
            b.to_async(rt).iter(|| set.route(black_box(&inputs.event), &inputs.subscriptions))
        });
    }
    g.bench_function("native", |b| b.iter(|| native::route(black_box(&inputs.event), &inputs.subscriptions)));
    g.finish();

    // 100 Trying changes nothing: the guest returns `none` at once, so this is the fixed cost of
    // any hook (store, instance, lowering a small record, teardown) with next to no guest work.
    let mut g = c.benchmark_group("hooks/minimal_call");
    for set in &host.sets {
        g.bench_function(format!("{}.map_sip_event_100", name(set)), |b| {
            b.to_async(rt).iter(|| counted(set.mapping.map_sip_event(black_box(&inputs.trying), &inputs.call)))
        });
    }
    g.finish();

    eprintln!("hook calls failed while measured: {}", FAILED_CALLS.load(Ordering::Relaxed));
}

fn anatomy(c: &mut Criterion) {
    let rt = runtime();
    let auth_wasm = camara_plugin_bundle::AUTHORIZATION.wasm;
    // Leaked, so that the closures below can copy plain `&'static` references into their
    // `async move` blocks; they are needed until the process ends anyway.
    let pooled: &'static Replica = Box::leak(Box::new(Replica::new(Allocator::Pooling)));
    let on_demand: &'static Replica = Box::leak(Box::new(Replica::new(Allocator::OnDemand)));
    let resident: &'static Replica = Box::leak(Box::new(Replica::new(Allocator::PoolingKeepResident)));
    eprintln!("replica: pooling {}, keep-resident pooling {}", pooled.pooling, resident.pooling);
    let imports = pooled.imports(auth_wasm);
    eprintln!("authorization-default imports {} interfaces: {}", imports.len(), imports.join(", "));

    // Store, limiter, deadline and CallState alone: what every call pays before any wasm.
    let mut g = c.benchmark_group("anatomy/store");
    g.bench_function("wasi_eager", |b| b.iter(|| pooled.store(Wasi::Eager)));
    g.bench_function("wasi_lazy", |b| b.iter(|| pooled.store(Wasi::Lazy)));
    g.finish();

    // A fresh store + instance, no call, dropped: instantiation and teardown of each component,
    // under the host's pool (keep-resident, as `RuntimeConfig::default()`), the pool without
    // keep-resident, and no pool.
    let mut g = c.benchmark_group("anatomy/instantiate");
    let cases: [(&str, &'static Replica, &[u8]); 5] = [
        ("authorization", resident, auth_wasm),
        ("authorization.pool_without_keep_resident", pooled, auth_wasm),
        ("authorization.on_demand_allocator", on_demand, auth_wasm),
        ("api-mapping", resident, camara_plugin_bundle::API_MAPPING.wasm),
        ("notification-routing", resident, camara_plugin_bundle::NOTIFICATION_ROUTING.wasm),
    ];
    for (name, replica, wasm) in cases {
        let pre: &'static _ = Box::leak(Box::new(match name {
            n if n.starts_with("authorization") => replica.authorization(wasm),
            "api-mapping" => replica.mapping(wasm),
            _ => replica.routing(wasm),
        }));
        let instantiate = || async move { pre.instantiate_async(&mut replica.store(Wasi::Eager)).await.unwrap() };
        faults_per_call(&rt, &format!("replica instantiate only, {name}"), instantiate);
        g.bench_function(name, |b| b.to_async(&rt).iter(instantiate));
    }
    g.finish();
    eprintln!("WASI contexts built on demand under Wasi::Lazy: {}", replica::LAZY_WASI_BUILT.load(Ordering::Relaxed));
}

fn config() -> Criterion {
    // Short enough for a 2-core machine shared with builds; 50 samples still give a stable
    // median and a usable 95% interval at microsecond scale. CLI flags override these.
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = hooks, anatomy
}
criterion_main!(benches);
