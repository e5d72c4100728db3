//! Reading CNI results (spec 0.3.x, 0.4.0, 1.x: `interfaces`, `ips`, `routes`, `dns`).

use std::net::IpAddr;

use serde_json::Value;

/// Checks that a plugin's ADD output is a CNI result we can chain and read IPs from.
pub(crate) fn validate(result: &Value) -> Result<(), String> {
    let obj = result.as_object().ok_or("not a JSON object")?;
    if let Some(ips) = obj.get("ips") {
        let ips = ips.as_array().ok_or("\"ips\" is not an array")?;
        for (i, ip) in ips.iter().enumerate() {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("ips[{i}] has no \"address\""))?;
            parse_address(address)
                .ok_or_else(|| format!("ips[{i}].address {address:?} is not an IP"))?;
        }
    }
    if let Some(ifaces) = obj.get("interfaces") {
        if !ifaces.is_array() {
            return Err("\"interfaces\" is not an array".to_string());
        }
    }
    Ok(())
}

/// `10.0.0.2/24` or a bare address -> the address.
fn parse_address(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.parse().ok()
}

/// The pod's IPs from a result: those on the interface named `ifname` whose `sandbox` is
/// the pod's netns; when the result names no such interface (some plugins omit
/// `interfaces` or `interface` indexes), every IP in it. Result order is kept, so a
/// dual-stack pod gets its v4 and v6 address in the order the plugin chose.
pub(crate) fn pod_ips(result: &Value, ifname: &str, netns: &str) -> Vec<IpAddr> {
    let ips: &[Value] = result
        .get("ips")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let sandbox_ifaces: Vec<u64> = result
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|ifaces| {
            ifaces
                .iter()
                .enumerate()
                .filter(|(_, iface)| {
                    iface.get("name").and_then(Value::as_str) == Some(ifname)
                        && iface.get("sandbox").and_then(Value::as_str) == Some(netns)
                })
                .map(|(i, _)| i as u64)
                .collect()
        })
        .unwrap_or_default();

    let address = |ip: &Value| {
        ip.get("address")
            .and_then(Value::as_str)
            .and_then(parse_address)
    };
    let mut chosen: Vec<IpAddr> = ips
        .iter()
        .filter(|ip| {
            ip.get("interface")
                .and_then(Value::as_u64)
                .is_some_and(|idx| sandbox_ifaces.contains(&idx))
        })
        .filter_map(address)
        .collect();
    if chosen.is_empty() {
        chosen = ips.iter().filter_map(address).collect();
    }
    let mut seen = Vec::with_capacity(chosen.len());
    chosen.retain(|ip| {
        if seen.contains(ip) {
            false
        } else {
            seen.push(*ip);
            true
        }
    });
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NS: &str = "/run/crius/netns/pod1";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_a_1_0_bridge_result() {
        // Shape of the bridge plugin's 1.0.0 output: host bridge, host veth, pod eth0.
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": NS}
            ],
            "ips": [
                {"interface": 2, "address": "10.22.0.5/16", "gateway": "10.22.0.1"},
                {"interface": 0, "address": "10.22.0.1/16"},
                {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        validate(&result).unwrap();
        assert_eq!(
            pod_ips(&result, "eth0", NS),
            vec![ip("10.22.0.5"), ip("fd00::5")]
        );
    }

    #[test]
    fn reads_a_0_4_result_with_version_fields() {
        let result = json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": NS}
            ],
            "ips": [
                {"version": "4", "interface": 0, "address": "10.1.2.3/24", "gateway": "10.1.2.1"}
            ]
        });
        validate(&result).unwrap();
        assert_eq!(pod_ips(&result, "eth0", NS), vec![ip("10.1.2.3")]);
    }

    #[test]
    fn ignores_eth0_of_another_sandbox() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "eth0", "sandbox": "/run/crius/netns/other"},
                {"name": "eth0", "sandbox": NS}
            ],
            "ips": [
                {"interface": 0, "address": "10.0.0.7/24"},
                {"interface": 1, "address": "10.0.0.8/24"}
            ]
        });
        assert_eq!(pod_ips(&result, "eth0", NS), vec![ip("10.0.0.8")]);
    }

    #[test]
    fn falls_back_to_all_ips() {
        // IPAM-only style result: no interfaces, no interface indexes.
        let result = json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "192.168.1.4/24"}, {"address": "2001:db8::4/64"}, {"address": "192.168.1.4/24"}]
        });
        assert_eq!(
            pod_ips(&result, "eth0", NS),
            vec![ip("192.168.1.4"), ip("2001:db8::4")]
        );
        assert!(pod_ips(&json!({"cniVersion": "1.0.0"}), "eth0", NS).is_empty());
    }

    #[test]
    fn rejects_malformed_results() {
        for bad in [
            json!("string"),
            json!({"ips": {}}),
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            json!({"ips": [{"address": "not-an-ip/24"}]}),
            json!({"interfaces": 3}),
        ] {
            assert!(validate(&bad).is_err(), "{bad}");
        }
    }
}
