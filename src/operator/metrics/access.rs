//! Who may read `/metrics`: a bearer token that the API server authenticates
//! (TokenReview) and authorizes (SubjectAccessReview for `get` on the
//! non-resource URL `/metrics`), as controller-runtime's metrics filter does.
//! Decisions are cached briefly, so that a scrape usually costs no API call.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use tracing::warn;

/// The path and verb a scraper must be allowed, as in a ClusterRole's
/// `nonResourceURLs` rule.
pub const METRICS_PATH: &str = "/metrics";
pub const METRICS_VERB: &str = "get";

/// How long a decision is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How many tokens' decisions are kept at most.
pub const CACHE_CAPACITY: usize = 256;

/// What the API server said about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Authenticated and allowed to `get /metrics`.
    Allowed,
    /// Not a valid token.
    Unauthenticated,
    /// A valid token of `user`, who may not `get /metrics`.
    Forbidden { user: String },
}

/// Asks the API server about a token.
pub trait Reviewer: Send + Sync {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Access, kube::Error>> + Send + 'a>>;
}

/// Reviews tokens with TokenReview and SubjectAccessReview requests.
pub struct KubeReviewer(pub Client);

impl KubeReviewer {
    async fn review_token(&self, token: &str) -> Result<Access, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.0.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let user = match status.user {
            Some(user) if status.authenticated == Some(true) => user,
            _ => return Ok(Access::Unauthenticated),
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(METRICS_PATH.into()),
                    verb: Some(METRICS_VERB.into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.0.clone())
            .create(&PostParams::default(), &access)
            .await?;
        if decided.status.is_some_and(|s| s.allowed) {
            Ok(Access::Allowed)
        } else {
            Ok(Access::Forbidden {
                user: user.username.unwrap_or_default(),
            })
        }
    }
}

impl Reviewer for KubeReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Access, kube::Error>> + Send + 'a>> {
        Box::pin(self.review_token(token))
    }
}

/// Recent decisions by token digest (tokens themselves are not kept),
/// bounded in age and number.
pub struct DecisionCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<[u8; 32], (Access, Instant)>,
}

impl DecisionCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        digest.as_ref().try_into().expect("SHA-256 has 32 bytes")
    }

    /// The decision about `token` made less than the TTL before `now`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Access> {
        let (access, at) = self.entries.get(&Self::key(token))?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| access.clone())
    }

    /// Remembers a decision; when full, expired entries go first, then the oldest.
    pub fn insert(&mut self, token: &str, access: Access, now: Instant) {
        let key = Self::key(token);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (access, now));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Guards `/metrics`: reviews each token through the cache.
pub struct MetricsAuth {
    reviewer: Box<dyn Reviewer>,
    cache: Mutex<DecisionCache>,
}

impl MetricsAuth {
    pub fn new(reviewer: impl Reviewer + 'static) -> Self {
        Self {
            reviewer: Box::new(reviewer),
            cache: Mutex::new(DecisionCache::new(CACHE_TTL, CACHE_CAPACITY)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DecisionCache> {
        crate::operator::sync::lock(&self.cache)
    }

    /// The decision about `token`, from the cache or the API server.
    pub async fn access(&self, token: &str) -> Result<Access, kube::Error> {
        let now = tokio::time::Instant::now().into_std();
        if let Some(access) = self.cache().get(token, now) {
            return Ok(access);
        }
        let access = self.reviewer.review(token).await?;
        self.cache().insert(token, access.clone(), now);
        Ok(access)
    }
}

/// Axum middleware: 401 without a valid token, 403 when its identity may
/// not `get /metrics`, 500 when the API server cannot be asked.
pub async fn require_access(
    State(auth): State<Arc<MetricsAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = bearer_token(header) else {
        return unauthorized("a bearer token is required");
    };
    match auth.access(token).await {
        Ok(Access::Allowed) => next.run(request).await,
        Ok(Access::Unauthenticated) => unauthorized("the token is not valid"),
        Ok(Access::Forbidden { user }) => (
            StatusCode::FORBIDDEN,
            format!("{user} may not {METRICS_VERB} {METRICS_PATH}\n"),
        )
            .into_response(),
        Err(error) => {
            warn!(%error, "cannot review a /metrics token with the API server");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot review the token with the API server\n",
            )
                .into_response()
        }
    }
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("Unauthorized: {why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
