//! Who is on the other end, for per-client limits: one normalised address per client, found
//! in one place.
//!
//! - An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 client it maps.
//! - An IPv6 client is its /64 network: a single host is routinely given a whole /64, so
//!   counting each address apart would hand an attacker 2^64 fresh allowances.
//! - Behind a trusted load balancer (`--client-ip-header`), the client is the *last* entry
//!   of the *last* such header line: the one the balancer itself appended. Earlier lines and
//!   entries are whatever the client sent. An entry may carry a port (`1.2.3.4:5678`,
//!   `[2001:db8::1]:443`). A request through the balancer without a usable entry is counted
//!   under the connection's address (the balancer's), and the log says so.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A client as per-client limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    pub fn new(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(Ipv6Addr::from(segments))
                }
            },
            v4 => v4,
        };
        Self(ip)
    }

    /// The client of `request`: from `client_ip_header` when set, else the connection.
    pub fn of<T>(request: &tonic::Request<T>, client_ip_header: Option<&str>) -> Self {
        let connection = request
            .remote_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let Some(header) = client_ip_header else {
            return Self::new(connection);
        };
        let forwarded = request
            .metadata()
            .get_all(header)
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(parse_entry);
        match forwarded {
            Some(ip) => Self::new(ip),
            None => {
                tracing::debug!(header, %connection, "no usable client address header; counting the connection's address");
                Self::new(connection)
            }
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// One forwarded-for entry: an address, with or without a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn addr(s: &str) -> ClientAddr {
        ClientAddr::new(s.parse().unwrap())
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_client() {
        assert_eq!(addr("::ffff:1.2.3.4"), addr("1.2.3.4"));
        assert_eq!(addr("::ffff:1.2.3.4").to_string(), "1.2.3.4");
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            addr("2001:db8:1:2::1"),
            addr("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(addr("2001:db8:1:2::1"), addr("2001:db8:1:3::1"));
        assert_eq!(addr("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    fn request_with(lines: &[&str]) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        for line in lines {
            request
                .metadata_mut()
                .append("x-forwarded-for", MetadataValue::try_from(*line).unwrap());
        }
        request
    }

    #[test]
    fn the_balancers_entry_is_the_last_of_the_last_line() {
        let request = request_with(&["6.6.6.6", "7.7.7.7, 10.0.0.9"]);
        assert_eq!(
            ClientAddr::of(&request, Some("x-forwarded-for")),
            addr("10.0.0.9")
        );
        let request = request_with(&["10.0.0.9", "6.6.6.6"]);
        assert_eq!(
            ClientAddr::of(&request, Some("x-forwarded-for")),
            addr("6.6.6.6"),
            "a client's own line before the balancer's does not count"
        );
    }

    #[test]
    fn entries_with_ports_are_understood() {
        for (entry, expected) in [
            ("1.2.3.4:5678", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            (" 1.2.3.4 ", "1.2.3.4"),
        ] {
            let request = request_with(&[entry]);
            assert_eq!(
                ClientAddr::of(&request, Some("x-forwarded-for")),
                addr(expected),
                "{entry}"
            );
        }
    }
}
