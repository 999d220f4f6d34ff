//! Who may read `/metrics`: a bearer token that the API server authenticates
//! (TokenReview) and authorizes (SubjectAccessReview for `get` on the
//! non-resource URL `/metrics`), as controller-runtime's metrics filter does.
//! Decisions are cached briefly, so that a scrape usually costs no API call.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
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
use parking_lot::{Mutex, MutexGuard};
use tracing::warn;

/// The path and verb a scraper must be allowed, as in a ClusterRole's
/// `nonResourceURLs` rule.
pub const METRICS_PATH: &str = "/metrics";
pub const METRICS_VERB: &str = "get";

/// How long a decision is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How many allowed tokens' decisions are kept at most.
pub const CACHE_CAPACITY: usize = 256;
/// How many refusals (invalid tokens, identities that may not read) are
/// kept, apart from the allowed decisions: a flood of junk tokens evicts
/// only other refusals, never Prometheus' allowed decision.
pub const REFUSAL_CACHE_CAPACITY: usize = 64;
/// A longer bearer token is refused without a review (a service account
/// token is about 1 KiB; an OIDC token a few).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Reviews in flight at once; more wait for a turn.
pub const MAX_CONCURRENT_REVIEWS: usize = 4;
/// A review (waiting for its turn included) that takes longer fails.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// An allowed decision older than the TTL is still used, for this long,
/// when a new review cannot be made (the API server is slow, down, or the
/// reviews are all taken by a flood): a scrape does not fail for it.
pub const STALE_ALLOWED_GRACE: Duration = Duration::from_secs(300);

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
        self.get_within(token, now, self.ttl)
    }

    /// The decision about `token` made less than `age` before `now`.
    fn get_within(&self, token: &str, now: Instant, age: Duration) -> Option<Access> {
        let (access, at) = self.entries.get(&Self::key(token))?;
        (now.saturating_duration_since(*at) < age).then(|| access.clone())
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

/// Why a token could not be reviewed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server could not be asked or did not answer.
    #[error("{0}")]
    Api(Arc<kube::Error>),
    /// Every review slot stayed busy, or the review took too long.
    #[error("the review did not finish within {0:?}")]
    Busy(Duration),
}

type SharedReview =
    futures::future::Shared<Pin<Box<dyn Future<Output = Result<Access, ReviewError>> + Send>>>;

/// Guards `/metrics`: reviews each token through the caches, at most
/// [`MAX_CONCURRENT_REVIEWS`] at once, each within [`REVIEW_TIMEOUT`], one
/// review per token however many requests carry it (single flight).
pub struct MetricsAuth {
    reviewer: Arc<dyn Reviewer>,
    /// Allowed decisions (kept up to [`STALE_ALLOWED_GRACE`] for outages).
    allowed: Mutex<DecisionCache>,
    /// Refusals, in their own small cache.
    refused: Mutex<DecisionCache>,
    slots: Arc<tokio::sync::Semaphore>,
    in_flight: Mutex<HashMap<[u8; 32], SharedReview>>,
}

impl MetricsAuth {
    pub fn new(reviewer: impl Reviewer + 'static) -> Self {
        Self {
            reviewer: Arc::new(reviewer),
            allowed: Mutex::new(DecisionCache::new(
                STALE_ALLOWED_GRACE.max(CACHE_TTL),
                CACHE_CAPACITY,
            )),
            refused: Mutex::new(DecisionCache::new(CACHE_TTL, REFUSAL_CACHE_CAPACITY)),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REVIEWS)),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn allowed(&self) -> MutexGuard<'_, DecisionCache> {
        self.allowed.lock()
    }

    fn refused(&self) -> MutexGuard<'_, DecisionCache> {
        self.refused.lock()
    }

    /// The decision about `token`, from the caches or the API server.
    pub async fn access(&self, token: &str) -> Result<Access, ReviewError> {
        let now = tokio::time::Instant::now().into_std();
        if let Some(access) = self.allowed().get_within(token, now, CACHE_TTL) {
            return Ok(access);
        }
        if let Some(access) = self.refused().get(token, now) {
            return Ok(access);
        }
        let key = DecisionCache::key(token);
        let review = {
            let mut in_flight = self.in_flight.lock();
            in_flight
                .entry(key)
                .or_insert_with(|| {
                    let reviewer = self.reviewer.clone();
                    let slots = self.slots.clone();
                    let token = token.to_string();
                    let review: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                        let reviewed = tokio::time::timeout(REVIEW_TIMEOUT, async {
                            let _slot = slots.acquire().await.expect("never closed");
                            reviewer.review(&token).await
                        })
                        .await;
                        match reviewed {
                            Ok(Ok(access)) => Ok(access),
                            Ok(Err(e)) => Err(ReviewError::Api(Arc::new(e))),
                            Err(_) => Err(ReviewError::Busy(REVIEW_TIMEOUT)),
                        }
                    });
                    futures::FutureExt::shared(review)
                })
                .clone()
        };
        let result = review.await;
        self.in_flight.lock().remove(&key);
        match &result {
            Ok(Access::Allowed) => self.allowed().insert(token, Access::Allowed, now),
            Ok(refusal) => self.refused().insert(token, refusal.clone(), now),
            Err(_) => {
                // An allowed decision a little older than the TTL still
                // stands when no review can be made now.
                if let Some(access) = self.allowed().get(token, now) {
                    return Ok(access);
                }
            }
        }
        result
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
    if token.len() > MAX_TOKEN_BYTES {
        // Refused before any review: no API call for an oversized token.
        return unauthorized("the token is too long");
    }
    match auth.access(token).await {
        Ok(Access::Allowed) => next.run(request).await,
        Ok(Access::Unauthenticated) => unauthorized("the token is not valid"),
        Ok(Access::Forbidden { user }) => (
            StatusCode::FORBIDDEN,
            format!("{user} may not {METRICS_VERB} {METRICS_PATH}\n"),
        )
            .into_response(),
        Err(ReviewError::Busy(after)) => {
            warn!(
                ?after,
                "cannot review a /metrics token now: every review is busy or slow"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "cannot review the token now; try again later\n",
            )
                .into_response()
        }
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use http::{Request as HttpRequest, Response as HttpResponse};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tower_test::mock;

    use super::*;
    use crate::{operator::metrics::Metrics, operator::servers::metrics_router};

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Bearer")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn decisions_expire_and_the_cache_stays_bounded() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut cache = DecisionCache::new(Duration::from_secs(60), 2);
        cache.insert("a", Access::Allowed, at(0));
        assert_eq!(cache.get("a", at(59)), Some(Access::Allowed));
        assert_eq!(cache.get("a", at(60)), None, "expired after the TTL");
        assert_eq!(cache.get("b", at(1)), None);

        cache.insert("b", Access::Unauthenticated, at(10));
        // Full: "a" is the oldest and goes.
        cache.insert(
            "c",
            Access::Forbidden {
                user: "alice".into(),
            },
            at(20),
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a", at(21)), None);
        assert_eq!(cache.get("b", at(21)), Some(Access::Unauthenticated));
        // Full again at 75: "b" has expired and goes; "c" stays.
        cache.insert("d", Access::Allowed, at(75));
        assert_eq!(
            cache.get("c", at(75)),
            Some(Access::Forbidden {
                user: "alice".into()
            })
        );
        assert_eq!(cache.get("d", at(75)), Some(Access::Allowed));
        // Replacing a known token's decision evicts nothing.
        cache.insert("d", Access::Unauthenticated, at(76));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("d", at(76)), Some(Access::Unauthenticated));
    }

    async fn body_json(request: HttpRequest<kube::client::Body>) -> Value {
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn respond(send: mock::SendResponse<HttpResponse<kube::client::Body>>, object: Value) {
        send.send_response(
            HttpResponse::builder()
                .status(201)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&object).unwrap(),
                ))
                .unwrap(),
        );
    }

    /// The reviewer's requests to a mocked API server answering with
    /// `authenticated` and `allowed`: the decision and the requests' bodies.
    async fn review_with(authenticated: bool, allowed: bool) -> (Access, Vec<(String, Value)>) {
        let (service, mut handle) =
            mock::pair::<HttpRequest<kube::client::Body>, HttpResponse<kube::client::Body>>();
        let reviewer = KubeReviewer(Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            let (request, send) = handle.next_request().await.expect("a TokenReview");
            let path = request.uri().path().to_string();
            let token_review = body_json(request).await;
            let mut answer = token_review.clone();
            answer["status"] = if authenticated {
                json!({"authenticated": true, "user": {
                "username": "system:serviceaccount:monitoring:prometheus",
                "uid": "u-1", "groups": ["system:serviceaccounts"],
                "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]}}})
            } else {
                json!({"authenticated": false})
            };
            respond(send, answer);
            seen.push((path, token_review));
            if authenticated {
                let (request, send) = handle.next_request().await.expect("a SubjectAccessReview");
                let path = request.uri().path().to_string();
                let access_review = body_json(request).await;
                let mut answer = access_review.clone();
                answer["status"] = json!({"allowed": allowed});
                respond(send, answer);
                seen.push((path, access_review));
            }
            seen
        });
        let access = reviewer.review("the-token").await.unwrap();
        (access, server.await.unwrap())
    }

    #[tokio::test]
    async fn the_api_server_authenticates_then_authorizes_the_token() {
        let (access, requests) = review_with(true, true).await;
        assert_eq!(access, Access::Allowed);
        let (path, token_review) = &requests[0];
        assert_eq!(path, "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(token_review["spec"], json!({"token": "the-token"}));
        let (path, access_review) = &requests[1];
        assert_eq!(path, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
        assert_eq!(
            access_review["spec"],
            json!({
                "user": "system:serviceaccount:monitoring:prometheus",
                "uid": "u-1",
                "groups": ["system:serviceaccounts"],
                "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
                "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            })
        );

        let (access, _) = review_with(true, false).await;
        assert_eq!(
            access,
            Access::Forbidden {
                user: "system:serviceaccount:monitoring:prometheus".into()
            }
        );
        let (access, requests) = review_with(false, true).await;
        assert_eq!(access, Access::Unauthenticated);
        assert_eq!(requests.len(), 1, "no SubjectAccessReview for a bad token");
    }

    /// Answers from a table of tokens, counting the questions.
    struct TableReviewer(Arc<AtomicUsize>);

    impl Reviewer for TableReviewer {
        fn review<'a>(
            &'a self,
            token: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Access, kube::Error>> + Send + 'a>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match token {
                    "reader" => Ok(Access::Allowed),
                    "stranger" => Ok(Access::Forbidden {
                        user: "stranger".into(),
                    }),
                    "unreachable" => Err(kube::Error::Service("connection refused".into())),
                    _ => Ok(Access::Unauthenticated),
                }
            })
        }
    }

    async fn scrape(router: &axum::Router, token: Option<&str>) -> (StatusCode, String) {
        let mut request = HttpRequest::get("/metrics");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_need_a_token_allowed_to_get_them_and_decisions_are_cached() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(Metrics::default());
        metrics.leader.set(1);
        let auth = Arc::new(MetricsAuth::new(TableReviewer(reviews.clone())));
        let router = metrics_router(metrics, Some(auth));

        let (status, body) = scrape(&router, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(reviews.load(Ordering::SeqCst), 0, "no token, no review");
        assert_eq!(
            scrape(&router, Some("forged")).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, body) = scrape(&router, Some("stranger")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("stranger may not get /metrics"), "{body}");
        assert_eq!(
            scrape(&router, Some("unreachable")).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );

        let (status, body) = scrape(&router, Some("reader")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("deploymentchannel_operator_leader 1"),
            "{body}"
        );
        let asked = reviews.load(Ordering::SeqCst);
        assert_eq!(asked, 4);
        // Within the TTL every decision comes from the cache; a failed review is not cached.
        for token in ["reader", "stranger", "forged"] {
            scrape(&router, Some(token)).await;
        }
        assert_eq!(reviews.load(Ordering::SeqCst), asked);
        scrape(&router, Some("unreachable")).await;
        assert_eq!(reviews.load(Ordering::SeqCst), asked + 1);
        // After it, the API server is asked again.
        tokio::time::advance(CACHE_TTL).await;
        assert_eq!(scrape(&router, Some("reader")).await.0, StatusCode::OK);
        assert_eq!(reviews.load(Ordering::SeqCst), asked + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_junk_tokens_cannot_evict_an_allowed_decision() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(MetricsAuth::new(TableReviewer(reviews.clone())));
        let router = metrics_router(Arc::new(Metrics::default()), Some(auth));
        assert_eq!(scrape(&router, Some("reader")).await.0, StatusCode::OK);
        for i in 0..(CACHE_CAPACITY * 4) {
            scrape(&router, Some(&format!("junk-{i}"))).await;
        }
        let before = reviews.load(Ordering::SeqCst);
        assert_eq!(scrape(&router, Some("reader")).await.0, StatusCode::OK);
        assert_eq!(reviews.load(Ordering::SeqCst), before, "reviewed again");
        // An oversized token costs no review.
        let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            scrape(&router, Some(&huge)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(reviews.load(Ordering::SeqCst), before);
    }

    /// A reviewer that takes a second, and counts reviews in flight.
    struct SlowReviewer {
        reviews: Arc<AtomicUsize>,
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Reviewer for SlowReviewer {
        fn review<'a>(
            &'a self,
            _token: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Access, kube::Error>> + Send + 'a>> {
            self.reviews.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                /// Counts down even when the review is dropped (timed out).
                struct InFlight<'a>(&'a AtomicUsize);
                impl Drop for InFlight<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                let _guard = InFlight(&self.in_flight);
                self.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(Access::Unauthenticated)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reviews_are_single_flight_bounded_and_timed_out() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(MetricsAuth::new(SlowReviewer {
            reviews: reviews.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            most: most.clone(),
        }));
        // One token asked 20 times at once: one review.
        let same = (0..20).map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.access("same").await })
        });
        for answer in futures::future::join_all(same).await {
            assert_eq!(answer.unwrap().unwrap(), Access::Unauthenticated);
        }
        assert_eq!(reviews.load(Ordering::SeqCst), 1);
        // 40 different tokens at once: at most MAX_CONCURRENT_REVIEWS in
        // flight; those that wait too long fail as busy.
        let many = (0..40).map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.access(&format!("t{i}")).await })
        });
        let answers = futures::future::join_all(many).await;
        assert!(
            most.load(Ordering::SeqCst) <= MAX_CONCURRENT_REVIEWS,
            "{most:?} {reviews:?}"
        );
        assert!(
            answers
                .iter()
                .any(|a| matches!(a.as_ref().unwrap(), Err(ReviewError::Busy(_))))
        );
    }
}
