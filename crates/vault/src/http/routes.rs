//! The API's route templates, shared by the router and the metrics labels.

pub const HEALTH: &str = "/v1/vault/health";
pub const STATUS: &str = "/v1/vault/status";
pub const GUARDIANS: &str = "/v1/vault/guardians";
pub const PUSH: &str = "/v1/vault/push";
pub const PULL: &str = "/v1/vault/pull";
pub const V1_CHALLENGE: &str = "/v1/vault/auth/challenge";
pub const V1_SESSION: &str = "/v1/vault/auth/session";
pub const V2_CHALLENGE: &str = "/v2/vault/auth/challenge";
pub const V2_SESSION: &str = "/v2/vault/auth/session";
pub const SECRETS: &str = "/v2/vault/secrets";
pub const SECRET: &str = "/v2/vault/secrets/{name}";
/// `/v2/vault/secrets/` with an empty name: refused like an invalid name.
pub const SECRET_EMPTY_NAME: &str = "/v2/vault/secrets/";
/// A name with a `/` in it (`/v2/vault/secrets/a/b`): also an invalid name,
/// not an unknown route.
pub const SECRET_NESTED_NAME: &str = "/v2/vault/secrets/{name}/{*rest}";
/// The same with nothing after the `/` (`/v2/vault/secrets/a/`).
pub const SECRET_TRAILING_SLASH: &str = "/v2/vault/secrets/{name}/";
