//! `dstream check`: connects to every broker of a cluster as `run` would (the same `--kafka-config`) and says how
//! each connection is secured (protocol, TLS version and cipher suite, the broker's certificate and when it ends,
//! SASL mechanism and user) and what the brokers offer, and, for each topic asked about, its partitions' leaders
//! and in-sync replicas. For setting up a secure cluster's configuration before a job runs on it.

use dstream_adapters::kafka::conn::{CertificateInfo, ConnectionInfo};
use dstream_adapters::kafka::error::KafkaError;
use dstream_adapters::kafka::Client;
use std::fmt::Write;

/// The report: one line for the cluster, one per broker, one per topic. `now` (seconds since 1970, UTC) dates
/// the certificates' remaining validity.
pub fn check(client: &mut Client, topics: &[String], now: i64) -> Result<String, KafkaError> {
    let brokers = client.brokers();
    let mut out = String::new();
    let plural = if brokers.len() == 1 { "" } else { "s" };
    let _ = writeln!(out, "cluster: {} broker{plural}, controller node {}", brokers.len(), client.controller());
    for (node, _) in &brokers {
        let info = client.connection_info(*node)?;
        let _ = writeln!(out, "node {node} at {}", describe(&info, now));
    }
    for topic in topics {
        let states = client.partition_states(topic)?;
        let leaders: Vec<String> = states.iter().map(|p| p.leader.to_string()).collect();
        let in_sync: Vec<String> = states.iter().map(|p| format!("{}/{}", p.in_sync, p.replicas)).collect();
        let _ = writeln!(
            out,
            "topic {topic}: {} partition{}, leaders {}, in sync {}",
            states.len(),
            if states.len() == 1 { "" } else { "s" },
            leaders.join(" "),
            in_sync.join(" ")
        );
    }
    Ok(out)
}

/// One connection in words: `ADDR: PROTOCOL[, TLS ...][, certificate ...][, SASL ...], N APIs`.
pub fn describe(info: &ConnectionInfo, now: i64) -> String {
    let mut line = format!("{}: {}", info.addr, info.protocol);
    if let Some(tls) = &info.tls {
        let _ = write!(line, ", {tls}");
    }
    if let Some(c) = &info.certificate {
        let _ = write!(line, ", {}", certificate(c, now));
    }
    if let Some((mechanism, user)) = &info.sasl {
        if user.is_empty() {
            let _ = write!(line, ", SASL {mechanism}");
        } else {
            let _ = write!(line, ", SASL {mechanism} as {user}");
        }
    }
    let _ = write!(line, ", {} APIs offered", info.apis);
    line
}

/// A certificate in words, with the days it has left.
fn certificate(c: &CertificateInfo, now: i64) -> String {
    let days = (c.not_after - now).div_euclid(86_400);
    let left = match days {
        d if d < 0 => format!("EXPIRED {} days ago", -d),
        0 => "EXPIRES within a day".to_string(),
        d if d < 30 => format!("EXPIRES in {d} days"),
        d => format!("{d} days left"),
    };
    format!("certificate \"{}\" issued by \"{}\", valid until {} ({left})", c.subject, c.issuer, date(c.not_after))
}

/// A UTC date, `YYYY-MM-DD`, of a time in seconds since 1970 (the proleptic Gregorian calendar).
pub fn date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_calendar_s() {
        // Known instants: the epoch, a leap day, the end of 1999, a date in 2038 beyond 32-bit seconds.
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(946_684_799), "1999-12-31");
        assert_eq!(date(2_208_988_800), "2040-01-01");
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn a_connection_is_described_without_secrets_and_with_its_certificate_s_days() {
        let info = ConnectionInfo {
            addr: "127.0.0.1:9094".into(),
            protocol: "SASL_SSL",
            tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
            certificate: Some(CertificateInfo {
                subject: "CN=broker".into(),
                issuer: "CN=ca".into(),
                not_after: 86_400 * 40,
            }),
            sasl: Some(("SCRAM-SHA-512", "alice".into())),
            apis: 60,
        };
        assert_eq!(
            describe(&info, 86_400 * 20),
            "127.0.0.1:9094: SASL_SSL, TLSv1_3 TLS13_AES_256_GCM_SHA384, certificate \"CN=broker\" issued by \
             \"CN=ca\", valid until 1970-02-10 (EXPIRES in 20 days), SASL SCRAM-SHA-512 as alice, 60 APIs offered"
        );
        let plain = ConnectionInfo { protocol: "PLAINTEXT", tls: None, certificate: None, sasl: None, ..info };
        assert_eq!(describe(&plain, 0), "127.0.0.1:9094: PLAINTEXT, 60 APIs offered");
    }
}
