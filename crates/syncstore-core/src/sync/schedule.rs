//! The timing rules of the client's sync loop, as plain data fed with
//! `now` (ms, any epoch) and, for jitter, a number in `[0, 1)`: when a
//! WebSocket is pinged and when it is dead ([`KeepAlive`]), how long
//! failed requests wait ([`Backoff`]), and when a step the local database
//! refused is tried again ([`StorageRetry`]). The browser binding holds
//! them and asks; nothing here reads a clock.

/// First delay after a failure, in ms.
pub const BACKOFF_MIN_MS: f64 = 250.0;
/// Ceiling of the delay after failures, in ms.
pub const BACKOFF_MAX_MS: f64 = 30_000.0;
/// First wait after a sync step the local database refused, in ms.
pub const STORAGE_RETRY_MIN_MS: f64 = 250.0;
/// Ceiling of the wait after storage failures, in ms.
pub const STORAGE_RETRY_MAX_MS: f64 = 4_000.0;

/// The wait before a retry a refusal asks for, in ms, from its status
/// and `Retry-After` header. Honoured on `429 Too Many Requests` (1 s when
/// the header is missing or unusable: the server must be slowed down) and
/// on `503 Service Unavailable` (the server's `SHUTTING_DOWN` and
/// `OVERLOADED` answers; none without a usable header: the plain backoff
/// then). Only the delta-seconds form is understood (what the reference
/// server sends); an HTTP date, a negative, fractional or otherwise
/// malformed value counts as missing. Any other status: 0.
pub fn retry_after_ms(status: u16, header: Option<&str>) -> f64 {
    let secs = header
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()))
        .map(delta_seconds)
        .filter(|s| s.is_finite());
    match status {
        429 => secs.unwrap_or(1.0) * 1000.0,
        503 => secs.unwrap_or(0.0) * 1000.0,
        _ => 0.0,
    }
}

/// A non-empty run of ASCII digits as a number, without `str::parse::<f64>`
/// (its decimal-to-float code is ~5 KB of the module, issue 19). Up to 19
/// significant digits the integer is exact and `as f64` rounds it as the
/// parser would; past that (a wait of over 10^19 s) it is rounded digit by
/// digit, and over ~309 digits it is infinite, as the parser's is.
fn delta_seconds(digits: &str) -> f64 {
    let digits = digits.trim_start_matches('0');
    if digits.len() <= 19 {
        // Below 10^19 < u64::MAX: cannot overflow.
        return digits
            .bytes()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0')) as f64;
    }
    digits
        .bytes()
        .fold(0.0, |n, b| n * 10.0 + f64::from(b - b'0'))
}

/// The keep-alive of one WebSocket (docs/protocol.md, 7.3). The client
/// sends a protocol `ping` when it has heard nothing (and sent no ping)
/// for `interval_ms`; the server answers `pong`. A socket that delivered
/// nothing at all for twice the interval, and nothing for an interval
/// since a ping, is dead: a half-open connection (a NAT or middlebox
/// dropped it) sends no close and no error. Without a ping since it was
/// last heard, a socket is never dead: a loop woken late (a background
/// tab's throttled timers) pings first and waits an interval for the
/// answer, rather than dropping a healthy socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepAlive {
    interval_ms: f64,
    heard_at: f64,
    pinged_at: f64,
}

impl KeepAlive {
    /// A socket opened at `now` (opening counts as hearing from it).
    pub fn new(interval_ms: f64, now: f64) -> KeepAlive {
        KeepAlive {
            interval_ms,
            heard_at: now,
            pinged_at: now,
        }
    }

    /// The socket delivered something (it opened, or a frame arrived).
    pub fn heard(&mut self, now: f64) {
        self.heard_at = self.heard_at.max(now);
    }

    /// When the socket last delivered something.
    pub fn heard_at(&self) -> f64 {
        self.heard_at
    }

    /// When the next `ping` is due.
    pub fn ping_at(&self) -> f64 {
        self.heard_at.max(self.pinged_at) + self.interval_ms
    }

    pub fn ping_due(&self, now: f64) -> bool {
        now >= self.ping_at()
    }

    /// A `ping` was sent.
    pub fn pinged(&mut self, now: f64) {
        self.pinged_at = now;
    }

    /// When the socket counts as dead unless it delivers something first
    /// (never, if no ping went out since it was last heard).
    pub fn dead_at(&self) -> f64 {
        if self.pinged_at > self.heard_at {
            (self.heard_at + 2.0 * self.interval_ms).max(self.pinged_at + self.interval_ms)
        } else {
            f64::INFINITY
        }
    }

    pub fn is_dead(&self, now: f64) -> bool {
        now >= self.dead_at()
    }

    /// The next moment something is due (a ping, or the death).
    pub fn next_at(&self) -> f64 {
        self.ping_at().min(self.dead_at())
    }
}

/// The exponential backoff of one kind of request (the push), with jitter.
///
/// - A failure of the loop's own attempt doubles the wait (bounded).
/// - A failure of an attempt the app asked for (`sync()`) never lengthens
///   a running backoff: only when nothing failed before does it count, as
///   the first failure the loop would have met itself.
/// - Any answer from the server (a pull, a socket frame, a push) ends the
///   backoff: the next attempt is due at once, though not sooner than
///   [`BACKOFF_MIN_MS`] after the last failure (so a burst of frames
///   during an outage of the push endpoint does not become a burst of
///   pushes), nor before a server's `Retry-After` ends.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Backoff {
    failures: u32,
    retry_at: f64,
    /// The earliest retry after the last failure, whatever answers.
    floor_at: f64,
    /// The end of the wait the server asked for (`Retry-After`): no
    /// attempt of the loop's own is due before it, whatever happened since.
    hold_at: f64,
}

impl Backoff {
    /// The wait after `failures` consecutive failures: 250 ms doubling up
    /// to 30 s, jittered over its upper half (`jitter` in `[0, 1)`), so
    /// clients that failed together spread out.
    pub fn delay(failures: u32, jitter: f64) -> f64 {
        let exp = BACKOFF_MIN_MS * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
        exp.min(BACKOFF_MAX_MS) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Consecutive failures since the last answer.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt may start.
    pub fn retry_at(&self) -> f64 {
        self.retry_at
    }

    pub fn ready(&self, now: f64) -> bool {
        now >= self.retry_at
    }

    /// An attempt failed; the next waits at least `min_wait` ms (a
    /// server's `Retry-After`, 0 if none). `forced`: the app asked for it.
    pub fn failed(&mut self, now: f64, jitter: f64, min_wait: f64, forced: bool) {
        self.floor_at = self.floor_at.max(now + min_wait.max(BACKOFF_MIN_MS));
        self.hold_at = self.hold_at.max(now + min_wait);
        if forced && self.failures > 0 {
            // The server's Retry-After still holds.
            self.retry_at = self.retry_at.max(self.hold_at);
            return;
        }
        self.failures += 1;
        let wait = Backoff::delay(self.failures, jitter);
        // An earlier Retry-After holds too (an answer since then ended the
        // backoff, not the server's wait).
        self.retry_at = (now + wait).max(self.hold_at);
    }

    /// The server answered something: the backoff ends.
    pub fn answered(&mut self) {
        self.failures = 0;
        self.retry_at = self.retry_at.min(self.floor_at);
    }

    /// Everything may be tried at once (the network came back).
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// When a sync step that the local database refused (a full disk, a
/// connection the browser closed) is tried again: 250 ms doubling up to
/// 4 s, jittered over its upper half. Independent of the HTTP [`Backoff`]:
/// the server answered, so its backoff has nothing to wait for, and a full
/// disk freed by the user should be used within seconds, not after the
/// long waits of a server outage.
///
/// - [`failed`](Self::failed) arms a retry; [`take_due`](Self::take_due)
///   answers true once when it is due (the loop then tries its work again:
///   ingest, pull or socket catch-up, push).
/// - While a retry is armed and not due, the loop holds its storage work
///   ([`holding`](Self::holding)) rather than spin on a refusing database.
/// - A failure of an attempt the app asked for (`sync()`) never lengthens
///   the wait, as in [`Backoff`]; a step that commits ends it all.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StorageRetry {
    failures: u32,
    retry_at: f64,
    armed: bool,
}

impl StorageRetry {
    /// The wait after `failures` consecutive storage failures.
    pub fn delay(failures: u32, jitter: f64) -> f64 {
        let exp = STORAGE_RETRY_MIN_MS * 2f64.powi(failures.saturating_sub(1).min(16) as i32);
        exp.min(STORAGE_RETRY_MAX_MS) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Consecutive storage failures since a step last committed.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A step failed in storage at `now`. `forced`: the app asked for the
    /// attempt.
    pub fn failed(&mut self, now: f64, jitter: f64, forced: bool) {
        if forced && self.failures > 0 {
            self.armed = true;
            return;
        }
        self.failures += 1;
        self.retry_at = now + StorageRetry::delay(self.failures, jitter);
        self.armed = true;
    }

    /// A step committed: storage works again.
    pub fn succeeded(&mut self) {
        *self = StorageRetry::default();
    }

    /// True while a retry is armed and not yet due.
    pub fn holding(&self, now: f64) -> bool {
        self.armed && now < self.retry_at
    }

    /// True once when the armed retry is due; it is disarmed then.
    pub fn take_due(&mut self, now: f64) -> bool {
        if self.armed && now >= self.retry_at {
            self.armed = false;
            return true;
        }
        false
    }

    /// When the armed retry is due (never, if none is armed).
    pub fn next_at(&self) -> f64 {
        if self.armed {
            self.retry_at
        } else {
            f64::INFINITY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_socket_is_pinged_then_declared_dead_at_twice_the_interval() {
        let mut k = KeepAlive::new(1000.0, 10_000.0);
        assert!(!k.ping_due(10_999.0));
        assert!(k.ping_due(11_000.0));
        k.pinged(11_000.0);
        // No second ping before another interval; no answer: dead at 2x.
        assert!(!k.ping_due(11_999.0));
        assert!(!k.is_dead(11_999.0));
        assert_eq!(k.dead_at(), 12_000.0);
        assert!(k.is_dead(12_000.0));
        assert_eq!(k.next_at(), 12_000.0);
    }

    #[test]
    fn any_frame_keeps_the_socket_alive_and_postpones_the_ping() {
        let mut k = KeepAlive::new(1000.0, 0.0);
        k.heard(900.0);
        assert!(!k.ping_due(1000.0));
        assert_eq!(k.ping_at(), 1900.0);
        k.pinged(1900.0);
        assert_eq!(k.dead_at(), 2900.0);
        k.heard(1950.0); // the pong
        assert_eq!(k.ping_at(), 2950.0);
        assert!(!k.is_dead(1e12), "no ping since the pong");
        k.pinged(2950.0);
        assert_eq!(k.dead_at(), 3950.0);
        assert!(!k.is_dead(3949.0));
        assert!(k.is_dead(3950.0));
        // A late event stamped earlier does not move time back.
        k.heard(1000.0);
        assert_eq!(k.heard_at(), 1950.0);
    }

    #[test]
    fn a_loop_woken_late_pings_before_it_declares_the_socket_dead() {
        // A background tab's timer fired a minute late: the socket was
        // quiet, but it was never asked.
        let mut k = KeepAlive::new(1000.0, 0.0);
        assert!(k.ping_due(60_000.0));
        assert!(!k.is_dead(60_000.0));
        k.pinged(60_000.0);
        assert_eq!(k.dead_at(), 61_000.0);
        k.heard(60_040.0);
        assert!(!k.is_dead(61_000.0));
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_in_delta_seconds() {
        assert_eq!(retry_after_ms(429, Some("2")), 2000.0);
        assert_eq!(retry_after_ms(503, Some("2")), 2000.0);
        assert_eq!(retry_after_ms(503, Some(" 1 ")), 1000.0);
        assert_eq!(retry_after_ms(503, Some("0")), 0.0);
        assert_eq!(retry_after_ms(503, Some("000120")), 120_000.0);
        assert_eq!(
            retry_after_ms(503, Some("9999999999999999999")),
            9_999_999_999_999_999_999.0 * 1000.0
        );
        // Past 19 digits: huge, still finite; past ~309: missing.
        let huge = retry_after_ms(503, Some("123456789012345678901234"));
        assert!(
            (huge / 1.234_567_890_123_456_8e26 - 1.0).abs() < 1e-12,
            "{huge}"
        );
        assert_eq!(retry_after_ms(503, Some(&"9".repeat(400))), 0.0);
        // Without a usable header: 1 s for a 429, the plain backoff for a 503.
        for bad in [
            None,
            Some(""),
            Some("soon"),
            Some("-3"),
            Some("1.5"),
            Some("inf"),
        ] {
            assert_eq!(retry_after_ms(429, bad), 1000.0, "{bad:?}");
            assert_eq!(retry_after_ms(503, bad), 0.0, "{bad:?}");
        }
        assert_eq!(
            retry_after_ms(503, Some("Wed, 21 Oct 2026 07:28:00 GMT")),
            0.0
        );
        // Other statuses ask for nothing, whatever they carry.
        for status in [200, 400, 500, 502, 504] {
            assert_eq!(retry_after_ms(status, Some("30")), 0.0, "{status}");
        }
    }

    #[test]
    fn a_503_retry_after_holds_through_answers_and_explicit_attempts() {
        // A push refused 503 with Retry-After: 2 at t=1000: the loop's next
        // push waits 2 s, although the first backoff delay is shorter, a
        // pull answers meanwhile, and the app calls sync().
        let mut b = Backoff::default();
        b.failed(1000.0, 1.0, retry_after_ms(503, Some("2")), false);
        assert_eq!(b.retry_at(), 3000.0);
        b.answered();
        assert!(!b.ready(2999.0));
        b.failed(1500.0, 1.0, 0.0, true);
        assert!(!b.ready(2999.0));
        assert!(b.ready(3000.0));
        // Without the header, the first delay alone.
        let mut c = Backoff::default();
        c.failed(1000.0, 1.0, retry_after_ms(503, None), false);
        assert_eq!(c.retry_at(), 1000.0 + BACKOFF_MIN_MS);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_ceiling() {
        assert_eq!(Backoff::delay(1, 1.0), 250.0);
        assert_eq!(Backoff::delay(1, 0.0), 125.0);
        assert_eq!(Backoff::delay(3, 1.0), 1000.0);
        assert_eq!(Backoff::delay(40, 1.0), BACKOFF_MAX_MS);
        let mut b = Backoff::default();
        assert!(b.ready(0.0));
        b.failed(0.0, 1.0, 0.0, false);
        assert_eq!(b.retry_at(), 250.0);
        b.failed(250.0, 1.0, 0.0, false);
        assert_eq!(b.retry_at(), 750.0);
        assert_eq!(b.failures(), 2);
        // Retry-After is a floor.
        b.failed(750.0, 1.0, 5000.0, false);
        assert_eq!(b.retry_at(), 5750.0);
    }

    #[test]
    fn an_explicit_attempt_never_lengthens_the_backoff() {
        let mut b = Backoff::default();
        for t in [0.0, 250.0, 750.0, 1750.0] {
            b.failed(t, 1.0, 0.0, false);
        }
        let (n, at) = (b.failures(), b.retry_at());
        assert_eq!(at, 1750.0 + 2000.0);
        for t in [1800.0, 1900.0, 3000.0] {
            b.failed(t, 1.0, 0.0, true);
        }
        assert_eq!((b.failures(), b.retry_at()), (n, at));
        // With nothing failed before, it is the first failure.
        let mut b = Backoff::default();
        b.failed(100.0, 1.0, 0.0, true);
        assert_eq!((b.failures(), b.retry_at()), (1, 350.0));
    }

    #[test]
    fn an_answer_ends_the_backoff_and_retries_at_once() {
        let mut b = Backoff::default();
        for i in 0..8 {
            b.failed(i as f64 * 1000.0, 1.0, 0.0, false);
        }
        assert_eq!(b.retry_at(), 7000.0 + BACKOFF_MAX_MS);
        b.answered();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.retry_at(), 7000.0 + BACKOFF_MIN_MS);
        assert!(b.ready(7250.0));
        // The next failure starts over from the first delay.
        b.failed(8000.0, 1.0, 0.0, false);
        assert_eq!(b.retry_at(), 8250.0);
        // An answer long after the failure: due now.
        b.answered();
        assert!(b.ready(8250.0));
        // A Retry-After holds through an answer.
        b.failed(9000.0, 1.0, 5000.0, false);
        b.answered();
        assert_eq!(b.retry_at(), 14_000.0);
        b.failed(9500.0, 1.0, 8000.0, true);
        assert_eq!(b.retry_at(), 17_500.0);
        // No failure at all: an answer changes nothing.
        let mut c = Backoff::default();
        c.answered();
        assert_eq!(c, Backoff::default());
        b.reset();
        assert_eq!(b, Backoff::default());
    }

    #[test]
    fn a_storage_failure_retries_on_its_own_short_bounded_schedule() {
        assert_eq!(StorageRetry::delay(1, 1.0), STORAGE_RETRY_MIN_MS);
        assert_eq!(StorageRetry::delay(1, 0.0), STORAGE_RETRY_MIN_MS / 2.0);
        assert_eq!(StorageRetry::delay(3, 1.0), 1000.0);
        assert_eq!(StorageRetry::delay(40, 1.0), STORAGE_RETRY_MAX_MS);
        let mut r = StorageRetry::default();
        assert!(!r.holding(0.0) && !r.take_due(0.0));
        assert_eq!(r.next_at(), f64::INFINITY);
        // However long the disk stays full, every retry comes within the
        // ceiling: the step runs again by itself.
        let mut now = 1000.0;
        for n in 1..=20 {
            r.failed(now, 1.0, false);
            assert_eq!(r.failures(), n);
            let wait = r.next_at() - now;
            assert!(
                wait > 0.0 && wait <= STORAGE_RETRY_MAX_MS,
                "failure {n}: {wait} ms"
            );
            assert!(r.holding(now + wait - 1.0));
            assert!(!r.take_due(now + wait - 1.0));
            assert!(r.take_due(now + wait));
            assert!(!r.take_due(now + wait), "due once");
            assert!(!r.holding(now + wait));
            assert_eq!(r.next_at(), f64::INFINITY);
            now += wait;
        }
        // A committed step ends it; the next failure starts over.
        r.succeeded();
        assert_eq!(r, StorageRetry::default());
        r.failed(now, 1.0, false);
        assert_eq!(r.next_at(), now + STORAGE_RETRY_MIN_MS);
    }

    #[test]
    fn an_explicit_attempt_never_lengthens_the_storage_retry() {
        let mut r = StorageRetry::default();
        r.failed(7000.0, 1.0, false);
        // sync() calls during the failure: the wait does not grow.
        r.failed(7100.0, 1.0, true);
        r.failed(7200.0, 1.0, true);
        assert_eq!(
            (r.failures(), r.next_at()),
            (1, 7000.0 + STORAGE_RETRY_MIN_MS)
        );
        assert!(r.take_due(7250.0));
        // An explicit attempt that fails after the retry ran re-arms it.
        r.failed(7300.0, 1.0, true);
        assert_eq!((r.failures(), r.next_at()), (1, 7250.0));
        assert!(r.take_due(7300.0));
        // With nothing failed before, it is the first failure.
        let mut r = StorageRetry::default();
        r.failed(100.0, 1.0, true);
        assert_eq!((r.failures(), r.next_at()), (1, 350.0));
    }
}
