//! The OpenAPI 3.1 document of every route (`GET /api/openapi.json`),
//! generated with `utoipa`: each [`Endpoint`] is described once, by an
//! exhaustive match (a new endpoint does not compile until it is
//! documented), and the document is built from the route table, so the
//! router and the document cannot list different routes. Body schemas are
//! Rust types deriving `ToSchema`.

use std::sync::OnceLock;

use http::Method;
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey as ApiKeyScheme, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, Schema};

use super::routes::{Admin, Endpoint, ROUTES, Route};
use crate::config::Scope;

/// The SPEC's error body, on every 4xx and 5xx.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the shape `ApiError::into_response` writes")]
struct ErrorBody {
    /// Machine code (`VALIDATION_ERROR`, …).
    error: String,
    /// Technical message.
    message: String,
    /// Message safe to show an end user.
    user_message: String,
    /// Id of this error in the logs.
    error_id: String,
    /// The request id (`X-Request-Id`).
    request_id: String,
    /// RFC 3339.
    timestamp: String,
    /// Structured details (the field, the limit, …).
    details: serde_json::Value,
}

/// A stored (or duplicate) webhook.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `webhook::store` writes")]
struct WebhookAck {
    received: bool,
    duplicate: bool,
    partner: String,
    partner_event_id: String,
    request_id: String,
    /// `pending`, `ignored` or `invalid` (absent on a duplicate).
    status: Option<String>,
}

/// `GET /health`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `health::health` writes")]
struct HealthBody {
    /// `ok`, `degraded` or `unavailable`.
    status: String,
    database: String,
    intake: String,
    /// `ok`, `down`, `circuit_open`, `starting` (not read yet) or
    /// `not_configured`: the last background reading, at most a second old.
    blockchain: String,
    /// `ok`, `degraded` or `not_configured`.
    redis: String,
    /// HNV, when the chain answered.
    circulating_supply: Option<String>,
}

/// `POST /api/v1/token/mint`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "the handler reads the fields one by one for precise errors")]
struct MintRequest {
    /// `{partner}:{external id}` or havend's user id.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*[^\\x00\\s][^\\x00]*$", example = "aurora:guest_001")]
    user: String,
    /// HNV as a decimal string, at most 18 decimals, > 0.
    #[schema(example = "12.5", pattern = "^([1-9][0-9]{0,30}(\\.[0-9]{1,18})?|0\\.[0-9]{0,17}[1-9])$")]
    amount: String,
    #[schema(max_length = 512)]
    reason: Option<String>,
    /// Used when no `Idempotency-Key` header is sent.
    #[schema(pattern = "^[A-Za-z0-9_-]{8,64}$")]
    idempotency_key: Option<String>,
}

/// `POST /api/v1/token/redeem`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "the handler reads the fields one by one for precise errors")]
struct RedeemRequest {
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*[^\\x00\\s][^\\x00]*$", example = "aurora:guest_001")]
    user: String,
    #[schema(example = "40.25", pattern = "^([1-9][0-9]{0,30}(\\.[0-9]{1,18})?|0\\.[0-9]{0,17}[1-9])$")]
    amount: String,
    /// Where the money goes; kept as sent.
    payout: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/cross-app/generate-session`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the request `cross_app` reads")]
struct SessionRequest {
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*[^\\x00\\s][^\\x00]*$", example = "aurora:guest_001")]
    user: String,
}

/// A new session.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `cross_app` writes")]
struct SessionBody {
    session_token: String,
    expires_at: String,
}

/// `POST /api/cross-app/validate-session`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the request `cross_app` reads")]
struct SessionTokenRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    session_token: String,
}

/// A valid session.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `cross_app` writes")]
struct SessionValidity {
    valid: bool,
    user: String,
    expires_at: String,
}

/// One account of a user.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `cross_app` writes")]
struct Account {
    id: String,
    /// `havend_user` or `custodial_wallet`.
    role: String,
}

/// A session's user and accounts.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `cross_app` writes")]
struct UserAccounts {
    user: String,
    accounts: Vec<Account>,
}

/// `POST /api/cross-app/validate-permission`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the request `cross_app` reads")]
struct PermissionRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    session_token: String,
    /// `read` is the only permission a session can hold.
    #[schema(min_length = 1, max_length = 512)]
    permission: String,
    /// `user:<ref>` or `wallet:<address>`.
    #[schema(min_length = 1, max_length = 512)]
    resource: String,
}

/// Whether a session may do it.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the body `cross_app` writes")]
struct PermissionAnswer {
    allowed: bool,
}

/// `POST /api/v1/admin/pause`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the request the admin API reads")]
struct PauseRequest {
    paused: bool,
}

/// How one endpoint is described.
struct Doc {
    summary: &'static str,
    tag: &'static str,
    request: Option<&'static str>,
    success: (&'static str, Body),
    query: &'static [(&'static str, Option<i64>)],
    headers: &'static [(&'static str, bool)],
}

/// A success body: a named schema, any JSON object, or text.
enum Body {
    Schema(&'static str),
    Object,
    Text(&'static str),
}

const fn doc(summary: &'static str, tag: &'static str, request: Option<&'static str>, success: (&'static str, Body)) -> Doc {
    Doc { summary, tag, request, success, query: &[], headers: &[] }
}

/// The description of `endpoint`.
fn describe(endpoint: Endpoint) -> Doc {
    use Body::{Object, Schema, Text};
    match endpoint {
        Endpoint::Webhook => doc("Receive a signed Aurora, Tribe or Hi.Events event", "webhooks", Some("object"), ("200", Schema("WebhookAck"))),
        Endpoint::StripeWebhook => doc("Receive a signed Stripe event", "webhooks", Some("object"), ("200", Schema("WebhookAck"))),
        Endpoint::Health => doc("Health of the database, the chain and Redis", "operations", None, ("200", Schema("HealthBody"))),
        Endpoint::Metrics => doc("Prometheus metrics", "operations", None, ("200", Text("text/plain"))),
        Endpoint::OpenApi => doc("This document", "operations", None, ("200", Object)),
        Endpoint::Mint => Doc { headers: &[("Idempotency-Key", false)], ..doc("Mint HNV to a user", "token", Some("MintRequest"), ("202", Schema("MintAccepted"))) },
        Endpoint::Redeem => Doc {
            headers: &[("Idempotency-Key", true)],
            ..doc("Burn HNV for a fiat payout (Idempotency-Key required)", "token", Some("RedeemRequest"), ("202", Schema("RedeemAccepted")))
        },
        Endpoint::User => doc("A user's wallet and balances", "token", None, ("200", Schema("UserSummary"))),
        Endpoint::Transaction => doc("An intent's status, hash, nonce and attempts", "token", None, ("200", Schema("TransactionView"))),
        Endpoint::Stream => Doc {
            query: &[("user", None)],
            headers: &[("Last-Event-ID", false)],
            ..doc("Server-sent transaction and ticketing status changes", "token", None, ("200", Text("text/event-stream")))
        },
        Endpoint::GenerateSession => doc("Open a cross-app session for a user", "cross-app", Some("SessionRequest"), ("200", Schema("SessionBody"))),
        Endpoint::ValidateSession => Doc {
            headers: &[("X-Shared-Secret", true)],
            ..doc("Check a session token", "cross-app", Some("SessionTokenRequest"), ("200", Schema("SessionValidity")))
        },
        Endpoint::UserAccounts => Doc {
            headers: &[("X-Shared-Secret", true), ("X-Session-Token", true)],
            ..doc("The session user's accounts", "cross-app", None, ("200", Schema("UserAccounts")))
        },
        Endpoint::ValidatePermission => Doc {
            headers: &[("X-Shared-Secret", true)],
            ..doc("Whether a session may do something", "cross-app", Some("PermissionRequest"), ("200", Schema("PermissionAnswer")))
        },
        Endpoint::Admin(action) => describe_admin(action),
    }
}

fn describe_admin(action: Admin) -> Doc {
    let admin = |summary, success| doc(summary, "admin", None, (success, Body::Object));
    match action {
        Admin::Wallets => admin("List hot wallets", "200"),
        Admin::WalletCreate => admin("Create a standby hot wallet", "201"),
        Admin::Wallet => admin("A hot wallet with its audit log", "200"),
        Admin::WalletActivate => admin("Activate a hot wallet (roles and gas checked on chain)", "200"),
        Admin::WalletRotate => admin("Rotate a hot wallet to a new standby one", "200"),
        Admin::WalletRevoke => admin("Revoke a hot wallet", "200"),
        Admin::WalletResume => admin("Resume a halted hot wallet", "200"),
        Admin::Breakers => admin("Circuit breaker status", "200"),
        Admin::BreakerReset => admin("Close the circuit breaker", "200"),
        Admin::HeldIntents => admin("Intents held over a mint limit", "200"),
        Admin::IntentRelease => admin("Release a held intent", "200"),
        Admin::IntentCancel => admin("Cancel a held intent", "200"),
        Admin::Pause => admin("Whether minting is paused", "200"),
        Admin::PauseSet => doc("Pause or resume minting on every daemon", "admin", Some("PauseRequest"), ("200", Body::Object)),
        Admin::TransactionsSummary => admin("Transaction monitoring summary", "200"),
        Admin::TransactionRetry => admin("Nudge the wallet of an intent still on its way", "202"),
        Admin::Events => Doc { query: &[("partner", None), ("status", None), ("limit", Some(200))], ..admin("List webhook events (without bodies)", "200") },
        Admin::Event => admin("A webhook event's status by partner event id", "200"),
        Admin::EventReplay => admin("Replay a dead-lettered event", "200"),
        Admin::Alerts => Doc { query: &[("limit", Some(500))], ..admin("Recent alerts with delivery results", "200") },
        Admin::AlertStats => admin("Alert and delivery counts", "200"),
        Admin::AlertTest => admin("Raise and deliver a test alert", "200"),
        Admin::Config => admin("Effective config (secrets redacted) and the last reload", "200"),
        Admin::ConfigReload => admin("Reload the config files now", "200"),
    }
}

/// The document, built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The document as JSON.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_else(|_| "{}".into()))
}

fn build() -> OpenApi {
    let mut paths = Paths::new();
    for route in ROUTES {
        paths.add_path_operation(route.path, vec![http_method(&route.method)], operation(route));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<WebhookAck>()
        .schema_from::<HealthBody>()
        .schema_from::<MintRequest>()
        .schema_from::<RedeemRequest>()
        .schema_from::<super::api::MintAccepted>()
        .schema_from::<super::api::RedeemAccepted>()
        .schema_from::<super::api::TransactionView>()
        .schema_from::<super::api::RedemptionView>()
        .schema_from::<crate::ledger::UserSummary>()
        .schema_from::<SessionRequest>()
        .schema_from::<SessionBody>()
        .schema_from::<SessionTokenRequest>()
        .schema_from::<SessionValidity>()
        .schema_from::<Account>()
        .schema_from::<UserAccounts>()
        .schema_from::<PermissionRequest>()
        .schema_from::<PermissionAnswer>()
        .schema_from::<PauseRequest>()
        .schema("object", ObjectBuilder::new().schema_type(Type::Object).build())
        .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .security_scheme("api_key", SecurityScheme::ApiKey(ApiKeyScheme::Header(ApiKeyValue::new("X-API-Key"))))
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("havend")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Partner webhooks in, HAVEN token rewards out: the webhook, token, cross-app and admin API."))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let doc = describe(route.endpoint);
    let mut builder = OperationBuilder::new()
        .summary(Some(doc.summary))
        .tag(doc.tag)
        .operation_id(Some(operation_id(route)));
    for name in route.path.split('/').filter_map(|part| part.strip_prefix('{')?.strip_suffix('}')) {
        builder = builder.parameter(parameter(name, ParameterIn::Path, Required::True));
    }
    for (name, maximum) in doc.query {
        let schema = match maximum {
            Some(maximum) => ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(*maximum)).build(),
            None => ObjectBuilder::new().schema_type(Type::String).build(),
        };
        builder = builder.parameter(
            ParameterBuilder::new().name(*name).parameter_in(ParameterIn::Query).required(Required::False).schema(Some(RefOr::T(Schema::Object(schema)))).build(),
        );
    }
    for (name, required) in doc.headers {
        builder = builder.parameter(parameter(name, ParameterIn::Header, if *required { Required::True } else { Required::False }));
    }
    if let Some(request) = doc.request {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(request))).build();
        builder = builder.request_body(Some(RequestBodyBuilder::new().content("application/json", content).required(Some(Required::True)).build()));
    }
    let (status, body) = doc.success;
    let success = match body {
        Body::Schema(name) => ResponseBuilder::new().description("Success").content("application/json", json_content(name)),
        Body::Object => ResponseBuilder::new().description("Success").content("application/json", json_content("object")),
        Body::Text(content_type) => ResponseBuilder::new().description("Success").content(content_type, ContentBuilder::new().schema(Some(string_schema())).build()),
    };
    builder = builder.response(status, success.build());
    builder = builder.response("default", ResponseBuilder::new().description("An error in the SPEC's shape").content("application/json", json_content("ErrorBody")).build());
    if route.scope.is_some() {
        let scope = route.scope.map_or("", Scope::as_str);
        builder = builder
            .description(Some(format!("Needs an API key of scope `{scope}` (admin keys may call token endpoints).")))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::new("api_key", Vec::<String>::new()));
    }
    builder.build()
}

fn json_content(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build()
}

fn string_schema() -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).build()))
}

/// A path or header parameter, with the constraints havend checks (so a generated request
/// that fits the document is one havend accepts).
fn parameter(name: &str, location: ParameterIn, required: Required) -> utoipa::openapi::path::Parameter {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let schema = match name {
        "id" => string().format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into()))).build(),
        "Last-Event-ID" => string().pattern(Some("^[0-9]{1,18}$")).build(),
        "Idempotency-Key" => string().pattern(Some("^[A-Za-z0-9_-]{8,64}$")).build(),
        "X-Session-Token" => string().pattern(Some("^[A-Za-z0-9_-]{43}$")).build(),
        _ => string().min_length(Some(1)).max_length(Some(255)).pattern(Some("^[^\\x00-\\x1f]+$")).build(),
    };
    ParameterBuilder::new().name(name).parameter_in(location).required(required).schema(Some(RefOr::T(Schema::Object(schema)))).build()
}

/// `post_api_v1_token_mint`, unique per route.
fn operation_id(route: &Route) -> String {
    let path: String = route.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let id = format!("{}_{}", route.method.as_str().to_ascii_lowercase(), path);
    let mut collapsed = String::with_capacity(id.len());
    for c in id.chars() {
        if !(c == '_' && collapsed.ends_with('_')) {
            collapsed.push(c);
        }
    }
    collapsed.trim_end_matches('_').to_owned()
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The document's (method, path) pairs, read back from its JSON.
    fn documented() -> BTreeSet<(String, String)> {
        let value: serde_json::Value = serde_json::from_str(json()).unwrap();
        let mut pairs = BTreeSet::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys().filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str())) {
                pairs.insert((method.to_uppercase(), path.clone()));
            }
        }
        pairs
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.as_str().to_owned(), r.path.to_owned())).collect();
        assert_eq!(routes, documented());
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_referenced_schema_defined() {
        let value: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        let schemas = value["components"]["schemas"].as_object().unwrap();
        let text = json();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
        let ids: Vec<&str> = value["paths"].as_object().unwrap().values().flat_map(|item| item.as_object().unwrap().values()).filter_map(|op| op["operationId"].as_str()).collect();
        assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len(), "operation ids are unique");
    }
}
