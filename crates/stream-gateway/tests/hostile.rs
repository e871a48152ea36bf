//! A hostile or unusual client against the real gateway: page headers that
//! keep the page to its own scripts, and tokens that need percent-encoding.

use test_support::gateway::Gateway;
use test_support::http;

/// Every character the page's `encodeURIComponent` must escape in a token.
const TOKEN: &str = "a+b/c%d&e=f";
const ENCODED: &str = "a%2Bb%2Fc%25d%26e%3Df";

#[tokio::test]
async fn tokens_are_percent_decoded_and_the_page_locks_itself_down() {
    let gw = Gateway::start(&[], &["--auth-token", TOKEN], &[]);
    let addr = gw.addr;
    test_support::wait_for(
        "the gateway to listen",
        std::time::Duration::from_secs(20),
        || async move { http::get(addr, "/healthz").await.ok().map(|_| ()) },
    )
    .await;

    let ok = http::get(addr, &format!("/api/streams?token={ENCODED}"))
        .await
        .expect("request");
    assert_eq!(ok.head.status, 200, "the encoded token is accepted");
    // The raw token is not a valid query (a bare `%`, an `&` splitting it).
    let raw = http::get(addr, &format!("/api/streams?token={TOKEN}"))
        .await
        .expect("request");
    assert_ne!(raw.head.status, 200, "the raw token must not pass");
    let wrong = http::get(addr, "/api/streams?token=a%2Bb")
        .await
        .expect("request");
    assert_eq!(wrong.head.status, 401);

    let page = http::get(addr, &format!("/?token={ENCODED}"))
        .await
        .expect("page");
    assert_eq!(page.head.status, 200);
    assert_eq!(page.head.header("referrer-policy"), Some("no-referrer"));
    let csp = page
        .head
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .expect("script-src");
    let inline_scripts = page.text().matches("<script>").count();
    assert_eq!(
        script_src.matches("'sha256-").count(),
        inline_scripts,
        "one hash per inline script: {script_src}"
    );
}

/// `--frame-ancestors` names who may frame the page; a value that would add
/// to the policy is refused at start.
#[tokio::test]
async fn frame_ancestors_come_from_the_flag_only() {
    let gw = Gateway::start(
        &[],
        &["--frame-ancestors", "https://dash.example,'self'"],
        &[],
    );
    let addr = gw.addr;
    test_support::wait_for(
        "the gateway to listen",
        std::time::Duration::from_secs(20),
        || async move { http::get(addr, "/healthz").await.ok().map(|_| ()) },
    )
    .await;
    let page = http::get(addr, "/").await.expect("page");
    let csp = page
        .head
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(
        csp.ends_with("frame-ancestors https://dash.example 'self'"),
        "{csp}"
    );
    let refused = std::process::Command::new(test_support::process::bin_path("stream-gateway"))
        .args(["--frame-ancestors", "https://a.example; script-src *"])
        .output()
        .expect("run the gateway");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a frame-ancestors source"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
