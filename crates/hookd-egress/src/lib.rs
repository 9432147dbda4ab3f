//! hookd's outbound connections under the egress policy ([`hookd_core::egress`]): the
//! dispatcher's deliveries and the control plane's OAuth2 token requests both connect through
//! [`connector`], which refuses a forbidden address before any connection is opened.
//!
//! Two places, because hyper-util's `HttpConnector` has two paths: a host name goes through
//! the resolver ([`GuardedResolver`]: it resolves the name itself, checks every address and
//! hands on only the allowed ones), while an IP literal in the URL skips the resolver entirely
//! ([`Guarded`] checks it, in every spelling the C resolver would accept, `2130706433`
//! included). Checking the addresses actually connected to, rather than the URL, is what makes
//! DNS answers that point inside the network (or change between check and use) harmless.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hookd_core::egress::{ALLOW_SETTING, EgressPolicy, Refusal, host_ip};
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{HttpConnector, dns::Name};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The connector of hookd's HTTP clients: TLS or plain, over the policy-checked TCP connector.
pub type Connector = HttpsConnector<Guarded<HttpConnector<GuardedResolver>>>;

/// Why no connection was opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("refused by the egress policy: {refusal} (allow it with {ALLOW_SETTING})")]
    Refused { refusal: Refusal },
    #[error(
        "refused by the egress policy: every address of {host} is forbidden: {refusal} \
         (allow it with {ALLOW_SETTING})"
    )]
    RefusedName { host: String, refusal: Refusal },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
}

/// The egress error somewhere in `error`'s chain of causes, if the policy is why it failed.
pub fn find_egress_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a EgressError> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<EgressError>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// A connector for hyper-util's legacy client that only ever connects to addresses `policy`
/// allows; `connect_timeout` bounds each TCP connect.
pub fn connector(policy: Arc<EgressPolicy>, connect_timeout: Duration) -> Connector {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy: policy.clone() });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(Guarded { inner: http, policy })
}

/// Resolves host names and keeps only the addresses the policy allows; fails, naming the
/// first refusal, when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = EgressError;
    type Future = BoxFuture<Result<Self::Response, EgressError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), EgressError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // A numeric spelling the connector did not take for an IP literal (`2130706433`)
            // would be turned into an address by the system resolver: judge it as one.
            if let Some(ip) = host_ip(&host) {
                policy.check(ip).map_err(|refusal| EgressError::Refused { refusal })?;
                return Ok(vec![SocketAddr::new(ip, 0)].into_iter());
            }
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| EgressError::Resolve { host: host.clone(), reason: e.to_string() })?;
            let (allowed, refused) = judge(&policy, resolved);
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(allowed.into_iter()),
                (true, Some(refusal)) => Err(EgressError::RefusedName { host, refusal }),
                (true, None) => Err(EgressError::NoAddress { host }),
            }
        })
    }
}

/// The allowed addresses, in the resolver's order, and the first refusal.
fn judge(
    policy: &EgressPolicy,
    addrs: impl Iterator<Item = SocketAddr>,
) -> (Vec<SocketAddr>, Option<Refusal>) {
    let mut allowed = Vec::new();
    let mut first_refusal = None;
    for addr in addrs {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    (allowed, first_refusal)
}

/// Wraps the TCP connector: a URL whose host is an IP literal is checked here, because the
/// connector connects to literals without asking the resolver.
#[derive(Debug, Clone)]
pub struct Guarded<C> {
    inner: C,
    policy: Arc<EgressPolicy>,
}

impl<C> Service<Uri> for Guarded<C>
where
    C: Service<Uri>,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<C::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(ip) = uri.host().and_then(host_ip)
            && let Err(refusal) = self.policy.check(ip)
        {
            return Box::pin(std::future::ready(Err(EgressError::Refused { refusal }.into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> Arc<EgressPolicy> {
        Arc::new(EgressPolicy::new(allow).expect("valid cidrs"))
    }

    /// Never contacted: the point of these tests is that nothing is connected to.
    struct Unreachable;

    impl Service<Uri> for Unreachable {
        type Response = ();
        type Error = BoxError;
        type Future = BoxFuture<Result<(), BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    async fn connect(allow: &[&str], url: &str) -> Result<(), String> {
        let mut guarded = Guarded { inner: Unreachable, policy: policy(allow) };
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        guarded.call(uri).await.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn ip_literals_are_checked_before_connecting() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]:9/",
            "http://2130706433:9/",
            "http://0x7f.1/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "https://[fd00::1]/",
        ] {
            let error = connect(&[], url).await.expect_err(url);
            assert!(error.starts_with("refused by the egress policy: "), "{url}: {error}");
            assert!(error.ends_with("(allow it with allow_cidrs)"), "{url}: {error}");
        }
        assert_eq!(
            connect(&[], "http://127.0.0.1/").await,
            Err("refused by the egress policy: 127.0.0.1 is a loopback address \
                 (allow it with allow_cidrs)"
                .to_owned())
        );
        assert_eq!(connect(&["127.0.0.0/8"], "http://127.0.0.1:9/").await, Ok(()));
        assert_eq!(connect(&[], "http://example.com/").await, Ok(()), "names go to the resolver");
    }

    fn name(host: &str) -> Name {
        host.parse().expect("any string is a name")
    }

    #[tokio::test]
    async fn names_keep_only_allowed_addresses() {
        let mut resolver = GuardedResolver { policy: policy(&[]) };
        let error = resolver.call(name("localhost")).await.expect_err("loopback");
        assert!(
            error.to_string().starts_with(
                "refused by the egress policy: every address of localhost is forbidden: "
            ),
            "{error}"
        );
        let error = resolver.call(name("2130706433")).await.expect_err("decimal");
        assert!(error.to_string().contains("127.0.0.1 is a loopback address"), "{error}");

        let mut resolver = GuardedResolver { policy: policy(&["127.0.0.0/8"]) };
        let addrs: Vec<_> = resolver.call(name("localhost")).await.expect("allowed").collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_ipv4() && a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn mixed_answers_keep_the_allowed_part() {
        let addrs = ["10.0.0.1:0", "8.8.8.8:0", "127.0.0.1:0"]
            .iter()
            .map(|a| a.parse::<SocketAddr>().expect("addr"));
        let (allowed, refused) = judge(&EgressPolicy::default(), addrs);
        assert_eq!(allowed, vec!["8.8.8.8:0".parse::<SocketAddr>().expect("addr")]);
        assert!(refused.expect("refused").to_string().contains("10.0.0.1 is a private"));
    }

    /// Like hyper-util's connect error: a message with the cause as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn the_egress_error_is_found_in_a_chain() {
        let inner = EgressError::NoAddress { host: "example.invalid".to_owned() };
        let outer = Wrapper(Wrapper(inner.into()).into());
        assert!(matches!(find_egress_error(&outer), Some(EgressError::NoAddress { .. })));
        assert!(find_egress_error(&Wrapper("plain".into())).is_none());
    }
}
