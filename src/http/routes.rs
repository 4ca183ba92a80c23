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
    /// `GET /api/openapi.json`.
    OpenApi,
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
    /// `/api/v1/admin/…`: the admin API, audited (see [`Admin`]).
    Admin(Admin),
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
    route(Method::GET, "/api/openapi.json", Endpoint::OpenApi, None),
    route(Method::POST, "/api/v1/token/mint", Endpoint::Mint, Some(Scope::Token)),
    route(Method::POST, "/api/v1/token/redeem", Endpoint::Redeem, Some(Scope::Token)),
    route(Method::GET, "/api/v1/users/{user}", Endpoint::User, Some(Scope::Token)),
    route(Method::GET, "/api/v1/transactions/{id}", Endpoint::Transaction, Some(Scope::Token)),
    route(Method::GET, "/api/v1/stream", Endpoint::Stream, Some(Scope::Token)),
    route(Method::POST, "/api/cross-app/generate-session", Endpoint::GenerateSession, Some(Scope::Token)),
    route(Method::POST, "/api/cross-app/validate-session", Endpoint::ValidateSession, None),
    route(Method::GET, "/api/cross-app/user-accounts", Endpoint::UserAccounts, None),
    route(Method::POST, "/api/cross-app/validate-permission", Endpoint::ValidatePermission, None),
    admin(Method::GET, "/api/v1/admin/wallets", Admin::Wallets),
    admin(Method::POST, "/api/v1/admin/wallets", Admin::WalletCreate),
    admin(Method::GET, "/api/v1/admin/wallets/{address}", Admin::Wallet),
    admin(Method::POST, "/api/v1/admin/wallets/{address}/activate", Admin::WalletActivate),
    admin(Method::POST, "/api/v1/admin/wallets/{address}/rotate", Admin::WalletRotate),
    admin(Method::POST, "/api/v1/admin/wallets/{address}/revoke", Admin::WalletRevoke),
    admin(Method::POST, "/api/v1/admin/wallets/{address}/resume", Admin::WalletResume),
    admin(Method::GET, "/api/v1/admin/breakers", Admin::Breakers),
    admin(Method::POST, "/api/v1/admin/breakers/reset", Admin::BreakerReset),
    admin(Method::GET, "/api/v1/admin/intents/held", Admin::HeldIntents),
    admin(Method::POST, "/api/v1/admin/intents/{id}/release", Admin::IntentRelease),
    admin(Method::POST, "/api/v1/admin/intents/{id}/cancel", Admin::IntentCancel),
    admin(Method::GET, "/api/v1/admin/pause", Admin::Pause),
    admin(Method::POST, "/api/v1/admin/pause", Admin::PauseSet),
    admin(Method::GET, "/api/v1/admin/transactions/summary", Admin::TransactionsSummary),
    admin(Method::POST, "/api/v1/admin/transactions/{id}/retry", Admin::TransactionRetry),
    admin(Method::GET, "/api/v1/admin/events", Admin::Events),
    admin(Method::GET, "/api/v1/admin/events/by-partner/{partner}/{partner_event_id}", Admin::Event),
    admin(Method::POST, "/api/v1/admin/events/{id}/replay", Admin::EventReplay),
    admin(Method::GET, "/api/v1/admin/alerts", Admin::Alerts),
    admin(Method::GET, "/api/v1/admin/alerts/stats", Admin::AlertStats),
    admin(Method::POST, "/api/v1/admin/alerts/test", Admin::AlertTest),
    admin(Method::GET, "/api/v1/admin/config", Admin::Config),
    admin(Method::POST, "/api/v1/admin/config/reload", Admin::ConfigReload),
];

/// An admin route: every one needs the admin scope.
const fn admin(method: Method, path: &'static str, action: Admin) -> Route {
    route(method, path, Endpoint::Admin(action), Some(Scope::Admin))
}

/// The admin API's endpoints (SPEC section 3, issue 9 item 5); `http::admin`
/// runs them and writes the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `GET /api/v1/admin/wallets`.
    Wallets,
    /// `POST /api/v1/admin/wallets`: a new standby hot wallet.
    WalletCreate,
    /// `GET /api/v1/admin/wallets/{address}`, with its audit log.
    Wallet,
    /// `POST /api/v1/admin/wallets/{address}/activate`.
    WalletActivate,
    /// `POST /api/v1/admin/wallets/{address}/rotate`.
    WalletRotate,
    /// `POST /api/v1/admin/wallets/{address}/revoke`.
    WalletRevoke,
    /// `POST /api/v1/admin/wallets/{address}/resume`.
    WalletResume,
    /// `GET /api/v1/admin/breakers`.
    Breakers,
    /// `POST /api/v1/admin/breakers/reset`.
    BreakerReset,
    /// `GET /api/v1/admin/intents/held`.
    HeldIntents,
    /// `POST /api/v1/admin/intents/{id}/release`.
    IntentRelease,
    /// `POST /api/v1/admin/intents/{id}/cancel`.
    IntentCancel,
    /// `GET /api/v1/admin/pause`.
    Pause,
    /// `POST /api/v1/admin/pause`: `{"paused": bool}`.
    PauseSet,
    /// `GET /api/v1/admin/transactions/summary`.
    TransactionsSummary,
    /// `POST /api/v1/admin/transactions/{id}/retry`.
    TransactionRetry,
    /// `GET /api/v1/admin/events?partner=&status=&limit=`.
    Events,
    /// `GET /api/v1/admin/events/by-partner/{partner}/{partner_event_id}`.
    Event,
    /// `POST /api/v1/admin/events/{id}/replay`.
    EventReplay,
    /// `GET /api/v1/admin/alerts?limit=`.
    Alerts,
    /// `GET /api/v1/admin/alerts/stats`.
    AlertStats,
    /// `POST /api/v1/admin/alerts/test`.
    AlertTest,
    /// `GET /api/v1/admin/config`: effective, secrets redacted, and the last reload.
    Config,
    /// `POST /api/v1/admin/config/reload`.
    ConfigReload,
}

impl Admin {
    /// The action's name in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Admin::Wallets => "wallet_list",
            Admin::WalletCreate => "wallet_create",
            Admin::Wallet => "wallet_get",
            Admin::WalletActivate => "wallet_activate",
            Admin::WalletRotate => "wallet_rotate",
            Admin::WalletRevoke => "wallet_revoke",
            Admin::WalletResume => "wallet_resume",
            Admin::Breakers => "breaker_status",
            Admin::BreakerReset => "breaker_reset",
            Admin::HeldIntents => "intent_held_list",
            Admin::IntentRelease => "intent_release",
            Admin::IntentCancel => "intent_cancel",
            Admin::Pause => "pause_get",
            Admin::PauseSet => "pause_set",
            Admin::TransactionsSummary => "transactions_summary",
            Admin::TransactionRetry => "transaction_retry",
            Admin::Events => "event_list",
            Admin::Event => "event_get",
            Admin::EventReplay => "event_replay",
            Admin::Alerts => "alert_list",
            Admin::AlertStats => "alert_stats",
            Admin::AlertTest => "alert_test",
            Admin::Config => "config_show",
            Admin::ConfigReload => "config_reload",
        }
    }

    /// Whether a call is written to the audit log: every action that
    /// changes something, and reading the config (it shows how the daemon
    /// is set up, so who looked matters).
    pub fn audited(self, method: &Method) -> bool {
        *method != Method::GET && *method != Method::HEAD || self == Admin::Config
    }
}

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
    fn every_admin_route_needs_the_admin_scope_and_is_reachable() {
        for route in ROUTES.iter().filter(|r| r.path.starts_with("/api/v1/admin/")) {
            assert!(matches!(route.endpoint, Endpoint::Admin(_)), "{}", route.path);
            assert_eq!(route.scope, Some(Scope::Admin), "{}", route.path);
            let path = route.path.replace("{address}", "0xabc").replace("{id}", "x1").replace("{partner}", "aurora").replace("{partner_event_id}", "e1");
            let Matched::Found(found, _) = find(&route.method, &path) else { panic!("{} {path} not found", route.method) };
            assert_eq!(found.endpoint, route.endpoint, "{path}");
        }
        let Matched::Found(route, params) = find(&Method::POST, "/api/v1/admin/events/aurora:b1/replay") else { panic!() };
        assert_eq!((route.endpoint, params), (Endpoint::Admin(Admin::EventReplay), vec!["aurora:b1"]));
    }

    #[test]
    fn other_methods_and_unknown_paths_are_told_apart() {
        assert_eq!(find(&Method::GET, "/webhooks/stripe"), Matched::WrongMethod(vec!["POST"]));
        assert_eq!(find(&Method::GET, "/api/v1/users/"), Matched::NotFound);
        assert_eq!(find(&Method::GET, "/nope"), Matched::NotFound);
    }
}
