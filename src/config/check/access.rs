//! `[server]` and `[[identities]]`: who may reach gatehouse, and as what.

use super::{
    Checker, MIN_MAX_CONNECTIONS, ROLES, env_var_problem, is_http_url, token_digest,
    valid_sha256_hex,
};
use crate::config::shape::KeyPath;
use crate::config::{IdentityConfig, ServerConfig};
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn server(&mut self, s: &ServerConfig) {
        let p = KeyPath::root().key("server");
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            self.report(
                &p.key("listen"),
                format!(
                    "invalid listen address {:?} (expected IP:PORT, e.g. \"127.0.0.1:7878\")",
                    s.listen
                ),
            );
        }
        if s.max_connections < MIN_MAX_CONNECTIONS {
            self.report(
                &p.key("max_connections"),
                format!(
                    "max_connections must be at least {MIN_MAX_CONNECTIONS} (got {})",
                    s.max_connections
                ),
            );
        }
        if s.max_waits_per_identity == 0 {
            self.report(
                &p.key("max_waits_per_identity"),
                "max_waits_per_identity must be at least 1 (every long poll and event stream needs one)",
            );
        } else if s.max_connections >= MIN_MAX_CONNECTIONS
            && s.max_waits_per_identity >= s.max_connections
        {
            self.report(
                &p.key("max_waits_per_identity"),
                format!(
                    "max_waits_per_identity ({}) must be below max_connections ({}), or one identity can hold every connection",
                    s.max_waits_per_identity, s.max_connections
                ),
            );
        }
        if s.max_body_bytes == 0 {
            self.report(
                &p.key("max_body_bytes"),
                "max_body_bytes must be greater than zero",
            );
        }
        self.positive(&p.key("default_timeout"), Some(s.default_timeout));
        self.positive(&p.key("header_timeout"), Some(s.header_timeout));
        self.positive(&p.key("body_timeout"), Some(s.body_timeout));
        self.positive(&p.key("grant_ttl"), Some(s.grant_ttl));
        for (i, h) in s.allowed_hosts.iter().enumerate() {
            if h.trim().is_empty() {
                self.report(&p.key("allowed_hosts").idx(i), "empty host name");
            }
        }
        for (i, o) in s.allowed_origins.iter().enumerate() {
            if !is_http_url(o) {
                self.report(
                    &p.key("allowed_origins").idx(i),
                    format!("invalid origin {o:?} (expected e.g. \"https://console.example\")"),
                );
            }
        }
    }

    pub(super) fn identities(&mut self, ids: &[IdentityConfig]) {
        let base = self.entries("identities");
        self.unique(
            "identity name",
            ids.iter()
                .enumerate()
                .map(|(i, id)| (base.idx(i).key("name"), id.name.get_ref().as_str())),
        );

        // digest → (identity name, line), to find two identities sharing a token.
        let mut tokens: HashMap<String, (&str, usize)> = HashMap::new();
        let mut token_envs: HashMap<&str, (&str, usize)> = HashMap::new();
        let mut os_users: HashMap<&str, (&str, usize)> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            let p = base.idx(i);
            let name = id.name.get_ref().as_str();

            if id.roles.is_empty() {
                self.report(
                    &p.key("roles"),
                    format!("no roles (allowed: {})", ROLES.join(", ")),
                );
            }
            for (j, role) in id.roles.iter().enumerate() {
                let role = role.get_ref();
                if !ROLES.contains(&role.as_str()) {
                    self.report(
                        &p.key("roles").idx(j),
                        format!("unknown role {role:?} (allowed: {})", ROLES.join(", ")),
                    );
                }
            }

            match (&id.token, &id.token_env) {
                (None, None) => {
                    self.report(&p.key("token"), "missing token or token_env (set one)")
                }
                (Some(_), Some(_)) => self.report(
                    &p.key("token_env"),
                    "token and token_env are both set (set only one)",
                ),
                _ => {}
            }
            if let Some(token) = &id.token {
                let tp = p.key("token");
                let token = token.get_ref().as_str();
                if token.is_empty() {
                    self.report(&tp, "empty token");
                } else if let Some(hex_part) = token.strip_prefix("sha256:")
                    && !valid_sha256_hex(hex_part)
                {
                    self.report(
                        &tp,
                        "a hashed token must be \"sha256:\" followed by 64 hex digits",
                    );
                }
                if let Some(digest) = token_digest(token) {
                    let line = self.loc.line(&tp);
                    match tokens.get(&digest) {
                        Some((other, first)) => self.report(
                            &tp,
                            format!("same token as identity {other:?} (line {first})"),
                        ),
                        None => {
                            tokens.insert(digest, (name, line));
                        }
                    }
                }
            }
            if let Some(var) = &id.token_env {
                let tp = p.key("token_env");
                let var = var.get_ref().as_str();
                if let Some(problem) = env_var_problem(var) {
                    self.report(&tp, problem);
                } else {
                    let line = self.loc.line(&tp);
                    match token_envs.get(var) {
                        Some((other, first)) => self.report(
                            &tp,
                            format!("same token_env as identity {other:?} (line {first})"),
                        ),
                        None => {
                            token_envs.insert(var, (name, line));
                        }
                    }
                }
            }
            for (key, claims) in [("agents", &id.agents), ("servers", &id.servers)] {
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (j, claim) in claims.iter().enumerate() {
                    let cp = p.key(key).idx(j);
                    let claim = claim.get_ref().as_str();
                    if claim.trim().is_empty() {
                        let what = if key == "agents" { "agent" } else { "server" };
                        self.report(
                            &cp,
                            format!("empty {what} name (list names this identity may claim, or \"*\" for any)"),
                        );
                        continue;
                    }
                    if seen.insert(claim, j).is_some() {
                        let what = if key == "agents" { "agent" } else { "server" };
                        self.report(&cp, format!("{what} {claim:?} is listed twice"));
                    }
                }
            }
            if let Some(user) = &id.os_user {
                let up = p.key("os_user");
                if user.trim().is_empty() {
                    self.report(&up, "empty os_user");
                } else {
                    let line = self.loc.line(&up);
                    match os_users.get(user.as_str()) {
                        Some((other, first)) => self.report(
                            &up,
                            format!("os_user {user:?} already belongs to identity {other:?} (line {first})"),
                        ),
                        None => {
                            os_users.insert(user, (name, line));
                        }
                    }
                }
            }
        }
    }
}
