//! Bearer tokens → identities with roles. Tokens are kept only as SHA-256 digests and
//! compared in constant time.

use crate::config::Config;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Agent,
    Reviewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "reviewer" => Some(Role::Reviewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<Role>,
    /// Agent names this identity may claim (`[[identities]] agents`; `"*"`: any).
    pub agents: Vec<String>,
    /// MCP server names this identity may claim (`[[identities]] servers`).
    pub servers: Vec<String>,
}

impl Identity {
    /// `admin` holds every role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// Whether a submission's `agent` claim is one this identity may make (DESIGN §9).
    pub fn may_claim_agent(&self, agent: &str) -> bool {
        may_claim(&self.agents, agent)
    }

    /// Whether a submission's `server` claim is one this identity may make.
    pub fn may_claim_server(&self, server: &str) -> bool {
        may_claim(&self.servers, server)
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_string()).collect()
    }
}

fn may_claim(allowed: &[String], claim: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == claim)
}

#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Identity)>,
}

impl TokenTable {
    /// Build from `[[identities]]`, reading `token_env` variables now.
    /// Errors name the identity and key, for a one-line exit-2 message.
    pub fn from_config(cfg: &Config) -> Result<TokenTable, String> {
        let mut entries = Vec::new();
        for (i, id) in cfg.identities.iter().enumerate() {
            let name = id.name.get_ref().clone();
            let roles = id
                .roles
                .iter()
                .map(|r| {
                    Role::parse(r.get_ref()).ok_or_else(|| {
                        format!("identities[{i}].roles: unknown role {:?}", r.get_ref())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let digest = match (&id.token, &id.token_env) {
                (Some(t), None) => {
                    parse_token(t.get_ref()).map_err(|e| format!("identities[{i}].token: {e}"))?
                }
                (None, Some(var)) => {
                    let value = std::env::var(var.get_ref()).map_err(|_| {
                        format!("identities[{i}].token_env: environment variable {} is not set (identity {name})", var.get_ref())
                    })?;
                    if value.is_empty() {
                        return Err(format!(
                            "identities[{i}].token_env: environment variable {} is empty",
                            var.get_ref()
                        ));
                    }
                    digest(&value)
                }
                _ => {
                    return Err(format!(
                        "identities[{i}]: give exactly one of token or token_env (identity {name})"
                    ));
                }
            };
            let names = |list: &[toml::Spanned<String>]| -> Vec<String> {
                list.iter().map(|s| s.get_ref().clone()).collect()
            };
            entries.push((
                digest,
                Identity {
                    name,
                    roles,
                    agents: names(&id.agents),
                    servers: names(&id.servers),
                },
            ));
        }
        Ok(TokenTable { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of a presented token. Every entry is compared, in constant time each.
    pub fn lookup(&self, token: &str) -> Option<&Identity> {
        let d = digest(token);
        let mut found = None;
        for (known, identity) in &self.entries {
            if bool::from(known.ct_eq(&d)) && found.is_none() {
                found = Some(identity);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A plain token, or `sha256:` and 64 hex digits of its digest.
fn parse_token(t: &str) -> Result<[u8; 32], String> {
    if let Some(hexed) = t.strip_prefix("sha256:") {
        let bytes = hex::decode(hexed)
            .map_err(|_| "sha256: must be followed by 64 hex digits".to_string())?;
        return bytes
            .try_into()
            .map_err(|_| "sha256: must be followed by 64 hex digits".to_string());
    }
    if t.is_empty() {
        return Err("token is empty".into());
    }
    Ok(digest(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_tokens_match() {
        let cfg = Config::parse(&format!(
            r#"
[[identities]]
name = "alice"
roles = ["reviewer"]
token = "alice-secret"

[[identities]]
name = "bot"
roles = ["agent"]
token = "sha256:{}"
"#,
            hex::encode(digest("bot-secret"))
        ))
        .unwrap();
        let t = TokenTable::from_config(&cfg).unwrap();
        assert_eq!(t.lookup("alice-secret").unwrap().name, "alice");
        assert_eq!(t.lookup("bot-secret").unwrap().name, "bot");
        assert!(t.lookup("sha256:".to_string().as_str()).is_none());
        assert!(t.lookup("alice-secreT").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn missing_env_is_a_clear_error() {
        let cfg = Config::parse(
            r#"
[[identities]]
name = "alice"
roles = ["reviewer"]
token_env = "GATEHOUSE_TEST_SURELY_UNSET_VAR"
"#,
        )
        .unwrap();
        let e = TokenTable::from_config(&cfg).unwrap_err();
        assert_eq!(
            e,
            "identities[0].token_env: environment variable GATEHOUSE_TEST_SURELY_UNSET_VAR is not set (identity alice)"
        );
    }
}
