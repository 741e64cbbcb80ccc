//! Send times travel in the message body: the send time in microseconds on the monotonic
//! clock, which every process of the machine shares (Node's `process.hrtime` reads the same
//! clock), then padding to [`BODY_LEN`] bytes. A receiver records now − send time.

/// Every benchmark message body is this long.
pub const BODY_LEN: usize = 100;

/// Microseconds on `CLOCK_MONOTONIC`.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// A body carrying `sent_us`.
pub fn body(sent_us: u64) -> String {
    let mut body = format!("{sent_us} ");
    body.extend(std::iter::repeat_n(
        'x',
        BODY_LEN.saturating_sub(body.len()),
    ));
    body
}

/// The send time a body carries, if it is one of ours.
pub fn sent_at(body: &str) -> Option<u64> {
    body.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_send_time_in_100_bytes() {
        let t = now_us();
        let b = body(t);
        assert_eq!(b.len(), BODY_LEN);
        assert_eq!(sent_at(&b), Some(t));
    }
}
