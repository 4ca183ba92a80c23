//! The OpenAPI document served at `/api/openapi.json` against the live router.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_by_the_live_listener() {
    let daemon = TestDaemon::start(Backend::Sqlite).await;
    let document = daemon.get("/api/openapi.json").await;
    assert_eq!(document.status, 200);
    assert_eq!(document.json["openapi"], "3.1.0");
    let paths = document.json["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        let path: String = template.split('/').map(|part| if part.starts_with('{') { "x" } else { part }).collect::<Vec<_>>().join("/");
        for method in item.as_object().unwrap().keys().filter(|k| ["get", "post"].contains(&k.as_str())) {
            // Without a key, a body or a signature: whatever the handler says, the router must know the route.
            let request = http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(format!("http://{}{path}", daemon.addr))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let answer = daemon.send(request).await;
            let routed = !(answer.status == 405 || answer.json["message"].as_str().is_some_and(|m| m.starts_with("no route for")));
            assert!(routed, "{method} {template} is documented but not routed: {} {:?}", answer.status, answer.json);
            operations += 1;
        }
    }
    assert_eq!(operations, havend::http::routes::ROUTES.len(), "every route of the table is documented once");
    let unknown = daemon.get("/api/v1/nope").await;
    assert_eq!(unknown.status, 404, "an undocumented path is not routed");
    daemon.stop().await;
}
