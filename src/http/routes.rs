//! Every route the listener knows, in one table: the router matches it, and
//! the OpenAPI test checks the published document against it.

use http::Method;

use crate::config::Scope;

/// What a route does; `route` in the parent module dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /webhooks/{partner}/{event}`.
    Webhook,
    /// `POST /webhooks/stripe`.
    StripeWebhook,
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `POST /api/v1/token/mint`.
    Mint,
    /// `POST /api/v1/token/redeem`.
    Redeem,
    /// `GET /api/v1/users/{user}`.
    User,
    /// `GET /api/v1/transactions/{id}`.
    Transaction,
    /// `GET /api/v1/stream` (server-sent events).
    Stream,
    /// `POST /api/cross-app/generate-session` (API key).
    GenerateSession,
    /// `POST /api/cross-app/validate-session` (shared secret).
    ValidateSession,
    /// `GET /api/cross-app/user-accounts` (shared secret and session token).
    UserAccounts,
    /// `POST /api/cross-app/validate-permission` (shared secret).
    ValidatePermission,
}

/// One route: method, path template (`{name}` matches one segment) and the
/// API key scope it needs (`None`: no API key; webhooks carry signatures,
/// partner apps' cross-app calls a shared secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path template.
    pub path: &'static str,
    /// The handler.
    pub endpoint: Endpoint,
    /// The API key scope needed.
    pub scope: Option<Scope>,
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint, scope: Option<Scope>) -> Route {
    Route { method, path, endpoint, scope }
}

/// The table. HEAD is answered for every GET route.
pub const ROUTES: &[Route] = &[
    route(Method::POST, "/webhooks/stripe", Endpoint::StripeWebhook, None),
    route(Method::POST, "/webhooks/{partner}/{event}", Endpoint::Webhook, None),
    route(Method::GET, "/health", Endpoint::Health, None),
    route(Method::GET, "/metrics", Endpoint::Metrics, None),
    route(Method::POST, "/api/v1/token/mint", Endpoint::Mint, Some(Scope::Token)),
    route(Method::POST, "/api/v1/token/redeem", Endpoint::Redeem, Some(Scope::Token)),
    route(Method::GET, "/api/v1/users/{user}", Endpoint::User, Some(Scope::Token)),
    route(Method::GET, "/api/v1/transactions/{id}", Endpoint::Transaction, Some(Scope::Token)),
    route(Method::GET, "/api/v1/stream", Endpoint::Stream, Some(Scope::Token)),
    route(Method::POST, "/api/cross-app/generate-session", Endpoint::GenerateSession, Some(Scope::Token)),
    route(Method::POST, "/api/cross-app/validate-session", Endpoint::ValidateSession, None),
    route(Method::GET, "/api/cross-app/user-accounts", Endpoint::UserAccounts, None),
    route(Method::POST, "/api/cross-app/validate-permission", Endpoint::ValidatePermission, None),
];

/// The outcome of matching a request against the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched<'a> {
    /// A route, and the values of its `{…}` segments in order.
    Found(&'static Route, Vec<&'a str>),
    /// The path exists with other methods (these).
    WrongMethod(Vec<&'static str>),
    /// No such path.
    NotFound,
}

/// Matches `method` and `path` (exact segments win over `{…}` ones, by table order).
pub fn find<'a>(method: &Method, path: &'a str) -> Matched<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some(params) = match_path(route.path, &segments) else { continue };
        if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
            return Matched::Found(route, params);
        }
        allowed.push(route.method.as_str());
    }
    if allowed.is_empty() { Matched::NotFound } else { Matched::WrongMethod(allowed) }
}

fn match_path<'a>(template: &str, segments: &[&'a str]) -> Option<Vec<&'a str>> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') && part.ends_with('}') {
            if segment.is_empty() {
                return None;
            }
            params.push(*segment);
        } else if part != segment {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_routes_win_and_parameters_are_captured() {
        let Matched::Found(route, params) = find(&Method::POST, "/webhooks/stripe") else { panic!() };
        assert_eq!((route.endpoint, params.len()), (Endpoint::StripeWebhook, 0));
        let Matched::Found(route, params) = find(&Method::POST, "/webhooks/aurora/booking-created") else { panic!() };
        assert_eq!((route.endpoint, params), (Endpoint::Webhook, vec!["aurora", "booking-created"]));
        let Matched::Found(route, params) = find(&Method::HEAD, "/api/v1/users/aurora:guest_1") else { panic!() };
        assert_eq!((route.endpoint, params), (Endpoint::User, vec!["aurora:guest_1"]));
    }

    #[test]
    fn other_methods_and_unknown_paths_are_told_apart() {
        assert_eq!(find(&Method::GET, "/webhooks/stripe"), Matched::WrongMethod(vec!["POST"]));
        assert_eq!(find(&Method::GET, "/api/v1/users/"), Matched::NotFound);
        assert_eq!(find(&Method::GET, "/nope"), Matched::NotFound);
    }
}
