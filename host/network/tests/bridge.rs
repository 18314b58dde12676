//! Two containers' namespaces on a bridge the test creates (unique name,
//! private /24) reach each other; a `none` namespace has loopback only.
//! Only addresses inside the test's own namespaces and loopback are pinged.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_network::{NetworkConfigList, NetworkManager, NetworkMode, NetworkOptions};

const CNI_BIN: &str = "/usr/lib/cni";
const BUSYBOX: &str = "/bin/busybox";

fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root".into());
    }
    for bin in ["bridge", "host-local", "loopback"] {
        if !Path::new(CNI_BIN).join(bin).is_file() {
            return Some(format!("{CNI_BIN}/{bin} missing: install containernetworking-plugins"));
        }
    }
    for bin in [BUSYBOX, "/usr/bin/nsenter", "/usr/sbin/ip"] {
        if !Path::new(bin).is_file() {
            return Some(format!("{bin} missing"));
        }
    }
    None
}

/// Removes the bridge (the bridge plugin's DEL leaves it) and the namespaces.
struct Cleanup {
    bridge: String,
    manager: Option<NetworkManager>,
    ids: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(m) = &self.manager {
            for id in &self.ids {
                if let Err(e) = m.detach(id) {
                    eprintln!("cleanup: detach {id}: {e:#}");
                }
            }
            let _ = m.drain_pool();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

/// A 10.x.y.0/24 no interface or route of this host uses.
fn free_subnet() -> String {
    let pid = std::process::id();
    let routes = String::from_utf8(Command::new("ip").args(["-4", "route", "show", "table", "all"]).output().unwrap().stdout)
        .unwrap();
    let addrs = String::from_utf8(Command::new("ip").args(["-4", "-o", "addr"]).output().unwrap().stdout).unwrap();
    for i in 0..200u32 {
        let n = pid.wrapping_add(i * 7919);
        let prefix = format!("10.{}.{}.", 100 + n % 100, (n / 100) % 256);
        if !routes.contains(&prefix) && !addrs.contains(&prefix) {
            return format!("{prefix}0/24");
        }
    }
    panic!("no free 10.x.y.0/24");
}

fn ping_from(ns: &Path, ip: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args([BUSYBOX, "ping", "-c", "1", "-W", "3", ip])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn addr(ip_prefix: &str) -> &str {
    ip_prefix.split('/').next().unwrap()
}

#[test]
fn bridge_namespaces_reach_each_other_and_none_is_isolated() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP bridge test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bridge = format!("bt{:x}", std::process::id() & 0xffffff);
    let subnet = free_subnet();
    let net = NetworkConfigList::isolated_bridge(
        &format!("berth-test-{bridge}"),
        &bridge,
        &subnet,
        &dir.path().join("ipam"),
    );
    let mut cleanup = Cleanup { bridge: bridge.clone(), manager: None, ids: vec![] };
    let manager = NetworkManager::new(NetworkOptions {
        run_dir: dir.path().join("run"),
        cni_bin_dirs: vec![PathBuf::from(CNI_BIN)],
        network: Some(net),
        pool_size: 1,
    })
    .unwrap();
    let pooled = manager.pooled().unwrap();
    assert_eq!(pooled.len(), 1, "the pool is filled at start");
    assert!(berth_network::netns::is_netns(&pooled[0]));
    cleanup.manager = Some(manager);
    let m = cleanup.manager.as_ref().unwrap();

    cleanup.ids.extend(["c1".to_string(), "c2".to_string(), "c3".to_string()]);
    let a1 = m.attach("c1", NetworkMode::Bridge).unwrap();
    // c2 as another berth root's container would be: the CNI plugins key
    // its lease by the host-unique id, not the container's name.
    let a2 = m.attach_as("c2", "root2-c2", NetworkMode::Bridge).unwrap();
    let a3 = m.attach("c3", NetworkMode::None).unwrap();
    assert_eq!(m.pooled().unwrap().len(), 1, "the pool is refilled after a claim");

    let net_prefix = subnet.trim_end_matches("0/24");
    for a in [&a1, &a2] {
        assert_eq!(a.ips.len(), 1, "{a:?}");
        assert!(a.ips[0].starts_with(net_prefix), "{a:?} not in {subnet}");
    }
    assert!(a3.ips.is_empty());
    let (ns1, ns2, ns3) =
        (a1.netns_path.clone().unwrap(), a2.netns_path.clone().unwrap(), a3.netns_path.clone().unwrap());
    assert_ne!(ns1, ns2);

    assert!(ping_from(&ns1, addr(&a2.ips[0])), "c1 cannot reach c2 at {}", a2.ips[0]);
    assert!(ping_from(&ns2, addr(&a1.ips[0])), "c2 cannot reach c1 at {}", a1.ips[0]);
    assert!(ping_from(&ns3, "127.0.0.1"), "loopback is down in none mode");
    assert!(!ping_from(&ns3, addr(&a1.ips[0])), "a none-mode namespace reached the bridge");

    let lease2 = dir.path().join("ipam").join(format!("berth-test-{bridge}")).join(addr(&a2.ips[0]));
    let holder = std::fs::read_to_string(&lease2).unwrap_or_default();
    assert_eq!(holder.lines().next(), Some("root2-c2"), "c2's lease {} is held by {holder:?}", lease2.display());

    // Detach releases the address and the namespace.
    m.detach("c2").unwrap();
    assert!(!lease2.exists(), "c2's lease survived its detach (DEL with another id?)");
    assert!(!ns2.exists());
    assert!(m.attachment("c2").unwrap().is_none());
    assert!(!ping_from(&ns1, addr(&a2.ips[0])), "c2's address still answers after detach");
    m.detach("c2").unwrap(); // twice is fine

    // A manager that no longer has the bridge configured (the config changed,
    // or `berth rm` runs without the flags of `berth run`) still releases
    // c1's address: the attachment kept the list its ADD ran.
    let lease = dir.path().join("ipam").join(format!("berth-test-{bridge}")).join(addr(&a1.ips[0]));
    assert!(lease.exists(), "host-local lease {} missing", lease.display());
    let unconfigured = NetworkManager::new(NetworkOptions {
        run_dir: dir.path().join("run"),
        cni_bin_dirs: vec![PathBuf::from(CNI_BIN)],
        network: None,
        pool_size: 0,
    })
    .unwrap();
    unconfigured.detach("c1").unwrap();
    assert!(!lease.exists(), "c1's lease {} survived its detach", lease.display());
    assert!(!ns1.exists());
}
