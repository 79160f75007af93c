//! The timing rules of the client's sync loop, as plain data fed with
//! `now` (ms, any epoch): when a WebSocket is pinged and when it is dead
//! ([`KeepAlive`]). The browser binding holds them and asks; nothing here
//! reads a clock.

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
}
