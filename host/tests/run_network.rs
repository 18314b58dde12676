//! `berth run --net`: two containers on a CNI bridge the test creates (its
//! own name, a /24 no interface or route of this host uses, no gateway, no
//! masquerading) reach each other by ping and HTTP; a `none` container
//! reaches only its loopback; `host` sees the host's interfaces. Nothing
//! outside the test's own namespaces and loopback is ever contacted.
//! Afterwards no namespace, attachment or address lease is left.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{Berth, ContainerGuard, busybox_layout};

const CNI_BIN: &str = "/usr/lib/cni";

fn skip_reason() -> Option<String> {
    let bins: Vec<PathBuf> = ["bridge", "host-local", "loopback"].iter().map(|b| Path::new(CNI_BIN).join(b)).collect();
    let mut needs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    needs.push(Path::new("/usr/sbin/ip"));
    common::cannot_run_containers(&needs).map(|m| format!("{m} (containernetworking-plugins, busybox-static, iproute2)"))
}

/// A 10.x.y.0/24 no interface or route of this host uses.
fn free_subnet() -> String {
    let show = |args: &[&str]| String::from_utf8(Command::new("ip").args(args).output().unwrap().stdout).unwrap();
    let (routes, addrs) = (show(&["-4", "route", "show", "table", "all"]), show(&["-4", "-o", "addr"]));
    let pid = std::process::id();
    (0..200u32)
        .map(|i| {
            let n = pid.wrapping_add(i * 7919).wrapping_add(31);
            format!("10.{}.{}.", 150 + n % 100, (n / 100) % 256)
        })
        .find(|prefix| !routes.contains(prefix.as_str()) && !addrs.contains(prefix.as_str()))
        .map(|prefix| format!("{prefix}0/24"))
        .expect("no free 10.x.y.0/24")
}

/// Deletes the test's bridge (the bridge plugin's DEL leaves it).
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The address `berth ps` shows for `id` (its ADDRESSES column).
fn address_of(ps: &str, id: &str) -> Option<String> {
    let line = ps.lines().find(|l| l.starts_with(id))?;
    let addresses = line.split_whitespace().nth(4)?;
    Some(addresses.split(',').next()?.split('/').next()?.to_string())
}

#[test]
fn containers_on_a_bridge_reach_each_other() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh", "sleep", "ping", "wget", "httpd", "ip", "echo", "cat"]);
    let bridge = format!("bn{:x}", std::process::id() & 0xffffff);
    let _bridge = BridgeGuard(bridge.clone());
    let subnet = free_subnet();
    let network_name = format!("berth-test-{bridge}");
    let cni_dir = dir.path().join("cni");
    std::fs::create_dir_all(&cni_dir).unwrap();
    std::fs::write(
        cni_dir.join("10-test.conflist"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network_name,
            "plugins": [{
                "type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": dir.path().join("ipam")},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, format!("[worker.network]\ncni-config-dir = \"{}\"\n", cni_dir.display())).unwrap();
    let berth = Berth { root: dir.path().join("root"), config };
    berth.ok(&["image", "import", "--name", "netbox", layout.to_str().unwrap()]);
    let network_dir = berth.state_dir().join("@network");

    // A serves a page on the bridge.
    let server = format!("net-a-{}", std::process::id());
    let script = "echo page-from-a > /tmp/index.html && exec httpd -f -p 8080 -h /tmp";
    berth.ok(&["run", "-d", "--name", &server, "--net", "bridge", "netbox", "sh", "-c", script]);
    let _server = ContainerGuard { berth: &berth, id: server.clone() };
    let ps = berth.wait_ps("A running", |ps| ps.lines().any(|l| l.starts_with(&server) && l.contains("running")));
    let a_ip = address_of(&ps, &server).unwrap_or_else(|| panic!("no address for {server} in ps:\n{ps}"));
    assert!(a_ip.starts_with(subnet.trim_end_matches("0/24")), "{a_ip} is not in {subnet}");
    assert!(network_dir.join("netns").join(&server).exists(), "A's namespace is not under {}", network_dir.display());

    // B, on the same bridge, reaches A by ICMP and TCP (no `wget -T`: the
    // static busybox crashes on it), and has an address
    // of its own in the subnet.
    let client = format!("net-b-{}", std::process::id());
    let script = format!(
        "ip -4 -o addr show eth0; ping -c 1 -W 5 {a_ip} >/dev/null || exit 11; \
         for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://{a_ip}:8080/index.html && exit 0; sleep 0.3; done; exit 12"
    );
    let out = berth.run(&["run", "--rm", "--name", &client, "--net", "bridge", "netbox", "sh", "-c", &script]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "B did not reach A at {a_ip}: {}\n{stdout}{}", out.status, text(&out.stderr));
    assert!(stdout.contains("page-from-a"), "B fetched something else from A: {stdout}");
    let b_line = stdout.lines().find(|l| l.contains("inet ")).unwrap_or_else(|| panic!("no eth0 address in B: {stdout}"));
    assert!(b_line.contains(subnet.trim_end_matches("0/24")) && !b_line.contains(&format!("{a_ip}/")), "{b_line}");
    // --rm released B's network: namespace, attachment and lease.
    assert!(!network_dir.join("netns").join(&client).exists(), "B's namespace is left");
    assert!(!network_dir.join("attachments").join(format!("{client}.json")).exists());

    // none: loopback only; the bridge is out of reach.
    let out = berth.run(&[
        "run", "--rm", "--net", "none", "netbox", "sh", "-c",
        &format!("ping -c 1 -W 2 127.0.0.1 >/dev/null || exit 21; ip -o link | grep -v ' lo:' && exit 22; ping -c 1 -W 2 {a_ip} && exit 23; exit 0"),
    ]);
    assert!(out.status.success(), "none mode: {}\n{}{}", out.status, text(&out.stdout), text(&out.stderr));

    // host: the host's interfaces, here the test's bridge itself.
    let out = berth.run(&["run", "--rm", "--net", "host", "netbox", "ip", "-o", "link", "show", &bridge]);
    assert!(out.status.success() && text(&out.stdout).contains(&bridge), "host mode: {}\n{}", out.status, text(&out.stderr));

    // A removed: nothing of its network is left, its lease is released.
    let lease = dir.path().join("ipam").join(&network_name).join(&a_ip);
    assert!(lease.exists(), "A's lease {} missing", lease.display());
    // Held under a host-unique CNI id (the root's namespace and the name):
    // another root's container named like A must not share or free it.
    let holder = std::fs::read_to_string(&lease).unwrap();
    let holder = holder.lines().next().unwrap_or_default();
    assert!(holder.starts_with("berth-") && holder.ends_with(&format!("-{server}")), "A's lease is held by {holder:?}");
    berth.ok(&["kill", "--signal", "KILL", &server]);
    berth.wait_ps("A stopped", |ps| !ps.lines().any(|l| l.starts_with(&server) && l.contains("running")));
    berth.ok(&["rm", &server]);
    assert!(!lease.exists(), "A's lease survived berth rm");
    assert!(!network_dir.join("netns").join(&server).exists(), "A's namespace survived berth rm");
}

#[test]
fn bridge_without_a_network_config_fails_and_leaves_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_layout(dir.path(), &["sh"]);
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "").unwrap();
    let berth = Berth { root: dir.path().join("root"), config };
    berth.ok(&["image", "import", "--name", "netbox", layout.to_str().unwrap()]);
    let network_dir = berth.state_dir().join("@network");
    let empty = dir.path().join("no-cni");
    std::fs::create_dir_all(&empty).unwrap();
    let id = format!("net-bad-{}", std::process::id());
    let out = berth.run(&[
        "run", "--rm", "--name", &id, "--net", "bridge", "--cni-config-dir", empty.to_str().unwrap(), "netbox", "true",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "ran without a network");
    assert!(stderr.contains("no CNI network configuration") && stderr.contains(empty.to_str().unwrap()), "{stderr}");
    assert!(berth.ok(&["ps", "-q"]).trim().is_empty(), "a failed run left a container");
    assert!(!network_dir.join("netns").join(&id).exists());
}
