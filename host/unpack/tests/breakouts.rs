//! containerd's `TestBreakouts` (pkg/archive/tar_test.go) as tests: the same
//! tars and pre-existing trees, the same expected outcome (applied with the
//! same result, or refused as an invalid archive). Each case also checks
//! that nothing outside the root changed (the temp dir around it and the
//! host paths the absolute symlinks name). Every case runs twice: with
//! openat2 and with the component-by-component fallback.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_unpack::{ApplyOptions, Error, root::Root};
use common::{RawTar, sha256, snapshot};

type Validator = Box<dyn Fn(&Path) -> Result<(), String>>;

struct Case {
    name: &'static str,
    /// Tree before the apply (relative to the root).
    pre: fn(&Path),
    /// The tar; gets the temp dir (outside the root) for cases naming it.
    tar: Box<dyn Fn(&Path) -> Vec<u8>>,
    /// `None`: must apply and validate; `Some`: must fail as invalid.
    validator: Option<Validator>,
}

fn none(_: &Path) {}

fn tar(f: impl Fn(&mut RawTar) + 'static) -> Box<dyn Fn(&Path) -> Vec<u8>> {
    Box::new(move |_| {
        let mut t = RawTar::new();
        f(&mut t);
        t.finish()
    })
}

/// Stat after resolving every symlink inside the root (containerd's
/// `fs.RootPath` + `os.Stat`).
fn stat_in_root(root: &Path, path: &str) -> Result<rustix::fs::Stat, String> {
    let dir = rustix::fs::open(root, rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
    let fd = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        rustix::fs::OFlags::PATH,
        rustix::fs::Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT,
    )
    .map_err(|e| format!("{path}: {e}"))?;
    rustix::fs::fstat(&fd).map_err(|e| e.to_string())
}

fn same_file(a: &'static str, b: &'static str) -> Option<Validator> {
    Some(Box::new(move |root| {
        let (sa, sb) = (stat_in_root(root, a)?, stat_in_root(root, b)?);
        if (sa.st_dev, sa.st_ino) != (sb.st_dev, sb.st_ino) {
            return Err(format!("{a} and {b} differ"));
        }
        Ok(())
    }))
}

fn file_value(f: &'static str, want: &'static [u8]) -> impl Fn(&Path) -> Result<(), String> {
    move |root| {
        let got = std::fs::read(root.join(f)).map_err(|e| format!("{f}: {e}"))?;
        if got != want {
            return Err(format!("{f}: {:?}, want {:?}", String::from_utf8_lossy(&got), String::from_utf8_lossy(want)));
        }
        Ok(())
    }
}

fn not_exists(f: &'static str) -> impl Fn(&Path) -> Result<(), String> {
    move |root| match std::fs::symlink_metadata(root.join(f)) {
        Ok(_) => Err(format!("{f} exists")),
        Err(_) => Ok(()),
    }
}

fn is_symlink(root: &Path, f: &str) -> Result<String, String> {
    let p = root.join(f.trim_start_matches('/'));
    let m = std::fs::symlink_metadata(&p).map_err(|e| format!("{f}: {e}"))?;
    if !m.file_type().is_symlink() {
        return Err(format!("{f} is not a symlink"));
    }
    Ok(std::fs::read_link(p).unwrap().display().to_string())
}

fn unbroken() -> Option<Validator> {
    Some(Box::new(file_value("etc/unbroken", b"unbroken")))
}

fn mkdir(root: &Path, p: &str, mode: u32) {
    std::fs::create_dir_all(root.join(p)).unwrap();
    std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(root: &Path, p: &str, data: &[u8]) {
    std::fs::write(root.join(p), data).unwrap();
}

fn symlink(root: &Path, target: &str, p: &str) {
    std::os::unix::fs::symlink(target, root.join(p)).unwrap();
}

fn cases() -> Vec<Case> {
    let u = b"unbroken";
    vec![
        Case {
            name: "SymlinkAbsolute",
            pre: none,
            tar: tar(move |t| {
                t.dir("etc", 0o755).symlink("/etc", "localetc").file("/localetc/unbroken", u, 0o644);
            }),
            validator: unbroken(),
        },
        Case {
            name: "SymlinkUpAndOut",
            pre: none,
            tar: tar(move |t| {
                t.dir("etc", 0o755).dir("dummy", 0o755).symlink("/dummy/../etc", "localetc").file("/localetc/unbroken", u, 0o644);
            }),
            validator: unbroken(),
        },
        Case {
            name: "SymlinkMultipleAbsolute",
            pre: none,
            tar: tar(move |t| {
                t.dir("etc", 0o755)
                    .dir("dummy", 0o755)
                    .symlink("/etc", "/dummy/etc")
                    .symlink("/dummy/etc", "localetc")
                    .file("/dummy/etc/unbroken", u, 0o644);
            }),
            validator: unbroken(),
        },
        Case {
            name: "SymlinkMultipleRelative",
            pre: none,
            tar: tar(move |t| {
                t.dir("etc", 0o755)
                    .dir("dummy", 0o755)
                    .symlink("/etc", "/dummy/etc")
                    .symlink("./dummy/etc", "localetc")
                    .file("/dummy/etc/unbroken", u, 0o644);
            }),
            validator: unbroken(),
        },
        Case {
            name: "SymlinkEmptyFile",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o755).file("etc/emptied", b"notempty", 0o644).symlink("/etc", "localetc").file("/localetc/emptied", b"", 0o644);
            }),
            validator: Some(Box::new(file_value("etc/emptied", b""))),
        },
        Case {
            name: "HardlinkRelative",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .dir("breakouts", 0o755)
                    .symlink("../../etc", "breakouts/d1")
                    .link("/breakouts/d1/passwd", "breakouts/mypasswd");
            }),
            validator: same_file("/breakouts/mypasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkDownAndOut",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .dir("breakouts", 0o755)
                    .dir("downandout", 0o755)
                    .symlink("../downandout/../../etc", "breakouts/d1")
                    .link("/breakouts/d1/passwd", "breakouts/mypasswd");
            }),
            validator: same_file("/breakouts/mypasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkAbsolute",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).symlink("/etc", "localetc").link("/localetc/passwd", "localpasswd");
            }),
            validator: same_file("localpasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkRelativeLong",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .symlink("../../../../../../../etc", "localetc")
                    .link("/localetc/passwd", "localpasswd");
            }),
            validator: same_file("localpasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkRelativeUpAndOut",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .symlink("upandout/../../../etc", "localetc")
                    .link("/localetc/passwd", "localpasswd");
            }),
            validator: same_file("localpasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkDirectRelative",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).link("../../../../../etc/passwd", "localpasswd");
            }),
            validator: same_file("localpasswd", "/etc/passwd"),
        },
        Case {
            name: "HardlinkDirectAbsolute",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).link("/etc/passwd", "localpasswd");
            }),
            validator: same_file("localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkParentDirectory",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).symlink("/etc/", "..").link("/etc/passwd", "localpasswd");
            }),
            validator: same_file("/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkEmptyFilename",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).symlink("/etc/", "").link("/etc/passwd", "localpasswd");
            }),
            validator: same_file("/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkParentRelative",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .symlink("/etc/", "localetc/sub/..")
                    .link("/etc/passwd", "/localetc/localpasswd");
            }),
            validator: same_file("/localetc/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkSlashEnded",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).dir("localetc/", 0o770).link("/etc/passwd", "/localetc/localpasswd");
            }),
            validator: same_file("/localetc/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkOverrideDirectory",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"inside");
                mkdir(r, "localetc", 0o755);
            },
            tar: tar(|t| {
                t.symlink("/etc", "localetc").link("/etc/passwd", "/localetc/localpasswd");
            }),
            validator: same_file("/localetc/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "SymlinkOverrideDirectoryRelative",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"inside");
                mkdir(r, "localetc", 0o755);
            },
            tar: tar(|t| {
                t.symlink("../../etc", "localetc").link("/etc/passwd", "/localetc/localpasswd");
            }),
            validator: same_file("/localetc/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "DirectoryOverrideSymlink",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"inside");
                symlink(r, "/etc", "localetc");
            },
            tar: tar(|t| {
                t.dir("/localetc/", 0o755).link("/etc/passwd", "/localetc/localpasswd");
            }),
            validator: same_file("/localetc/localpasswd", "/etc/passwd"),
        },
        Case {
            name: "DirectoryOverrideSymlinkAndHardlink",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"inside");
                symlink(r, "etc", "localetc");
                std::fs::hard_link(r.join("etc/passwd"), r.join("etc/localpasswd")).unwrap();
            },
            tar: tar(|t| {
                t.dir("/localetc/", 0o755).file("/localetc/localpasswd", b"different", 0o644);
            }),
            validator: Some(Box::new(|root| match same_file("/localetc/localpasswd", "/etc/passwd").unwrap()(root) {
                Ok(()) => Err("files are the same, expected different".into()),
                Err(e) if e.contains("differ") => Ok(()),
                Err(e) => Err(e),
            })),
        },
        Case { name: "WhiteoutRootParent", pre: etc_inside, tar: tar(|t| { t.file(".wh...", b"", 0o644); }), validator: None },
        Case { name: "WhiteoutParent", pre: etc_inside, tar: tar(|t| { t.file("etc/.wh...", b"", 0o644); }), validator: None },
        Case { name: "WhiteoutRoot", pre: etc_inside, tar: tar(|t| { t.file(".wh..", b"", 0o644); }), validator: None },
        Case { name: "WhiteoutCurrentDirectory", pre: etc_inside, tar: tar(|t| { t.file("etc/.wh..", b"", 0o644); }), validator: None },
        Case {
            name: "WhiteoutSymlink",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"all users");
                symlink(r, "/etc", "localetc");
            },
            tar: tar(|t| {
                t.file(".wh.localetc", b"", 0o644);
            }),
            validator: Some(Box::new(|r| {
                file_value("etc/passwd", b"all users")(r)?;
                not_exists("localetc")(r)
            })),
        },
        Case {
            name: "WhiteoutSymlinkPath",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"all users");
                write(r, "etc/whitedout", b"ahhhh whiteout");
                symlink(r, "/etc", "localetc");
            },
            tar: tar(|t| {
                t.file("localetc/.wh.whitedout", b"", 0o644);
            }),
            validator: Some(Box::new(|r| {
                file_value("etc/passwd", b"all users")(r)?;
                not_exists("etc/whitedout")(r)
            })),
        },
        Case {
            name: "WhiteoutDirectoryName",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"all users");
                write(r, "etc/whitedout", b"ahhhh whiteout");
                symlink(r, "/etc", "localetc");
            },
            tar: tar(|t| {
                t.file(".wh.etc/somefile", b"non-empty", 0o644);
            }),
            validator: Some(Box::new(|r| {
                file_value("etc/passwd", b"all users")(r)?;
                file_value(".wh.etc/somefile", b"non-empty")(r)
            })),
        },
        Case {
            name: "WhiteoutDeadSymlinkParent",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"all users");
                symlink(r, "/dne", "localetc");
            },
            tar: tar(|t| {
                t.file("localetc/.wh.etc", b"", 0o644);
            }),
            validator: Some(Box::new(file_value("etc/passwd", b"all users"))),
        },
        Case {
            name: "WhiteoutRelativePath",
            pre: |r| {
                mkdir(r, "etc", 0o755);
                write(r, "etc/passwd", b"all users");
                symlink(r, "/dne", "localetc");
            },
            tar: tar(|t| {
                t.file("dne/../.wh.etc", b"", 0o644);
            }),
            validator: Some(Box::new(not_exists("etc/passwd"))),
        },
        Case {
            name: "HardlinkSymlinkBeforeCreateTarget",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .symlink("/etc/passwd", "localpasswd")
                    .link("localpasswd", "localpasswd-dup")
                    .file("/etc/passwd", b"after", 0o644);
            }),
            validator: same_file("localpasswd-dup", "/etc/passwd"),
        },
        Case {
            name: "HardlinkSymlinkRelative",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770)
                    .file("/etc/passwd", b"inside", 0o644)
                    .symlink("../../../../../etc/passwd", "passwdlink")
                    .link("/passwdlink", "localpasswd");
            }),
            validator: Some(Box::new(|r| {
                if is_symlink(r, "/localpasswd")? != is_symlink(r, "/passwdlink")? {
                    return Err("symlink targets differ".into());
                }
                same_file("/localpasswd", "/etc/passwd").unwrap()(r)
            })),
        },
        Case {
            name: "HardlinkSymlinkAbsolute",
            pre: none,
            tar: tar(|t| {
                t.dir("etc", 0o770).file("/etc/passwd", b"inside", 0o644).symlink("/etc/passwd", "passwdlink").link("/passwdlink", "localpasswd");
            }),
            validator: Some(Box::new(|r| {
                if is_symlink(r, "/localpasswd")? != is_symlink(r, "/passwdlink")? {
                    return Err("symlink targets differ".into());
                }
                same_file("/localpasswd", "/etc/passwd").unwrap()(r)
            })),
        },
        Case {
            name: "HardlinkSymlinkChmod",
            pre: none,
            tar: Box::new(|td| {
                let p = td.join("perm400");
                std::fs::write(&p, b"...").unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
                let ep = td.join("also-exists-outside-root");
                std::fs::write(&ep, b"...").unwrap();
                std::fs::set_permissions(&ep, std::fs::Permissions::from_mode(0o640)).unwrap();
                let mut t = RawTar::new();
                t.symlink(p.to_str().unwrap(), ep.to_str().unwrap()).link(ep.to_str().unwrap(), "sketchylink");
                t.finish()
            }),
            validator: Some(Box::new(|root| {
                let p = root.parent().unwrap().join("perm400");
                let mode = std::fs::symlink_metadata(&p).unwrap().mode() & 0o777;
                if mode != 0o400 {
                    return Err(format!("{} perm changed from 0400 to {mode:o}", p.display()));
                }
                Ok(())
            })),
        },
    ]
}

fn etc_inside(r: &Path) {
    mkdir(r, "etc", 0o755);
    write(r, "etc/passwd", b"inside");
}

/// Host files an escaping entry would touch.
fn host_state() -> Vec<(String, Option<String>)> {
    ["/etc/passwd", "/etc/unbroken", "/etc/emptied", "/etc/localpasswd", "/localpasswd", "/passwdlink", "/dne"]
        .iter()
        .map(|p| (p.to_string(), std::fs::symlink_metadata(p).ok().map(|m| format!("{:o} {} {}", m.mode(), m.ino(), std::fs::read(p).map(|d| sha256(&d)).unwrap_or_default()))))
        .collect()
}

fn run(no_openat2: bool) {
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let td = tempfile::tempdir().unwrap();
        let root = td.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(td.path().join("outside-file"), b"outside").unwrap();
        (case.pre)(&root);
        let data = (case.tar)(td.path());
        let outside_before = snapshot(td.path(), Some(&root));
        let host_before = host_state();

        let r = Root::open(&root).unwrap();
        let opts = ApplyOptions { no_openat2, ..ApplyOptions::default() };
        let result = berth_unpack::apply_tar(&r, data.as_slice(), &opts);

        if snapshot(td.path(), Some(&root)) != outside_before {
            failures.push(format!("{}: changed something outside the root", case.name));
        }
        if host_state() != host_before {
            failures.push(format!("{}: changed a host file", case.name));
        }
        match (&case.validator, result) {
            (Some(v), Ok(_)) => {
                if let Err(e) = v(&root) {
                    failures.push(format!("{}: validation: {e}", case.name));
                }
            }
            (Some(_), Err(e)) => failures.push(format!("{}: apply failed: {e:#}", case.name)),
            (None, Ok(_)) => failures.push(format!("{}: applied, expected an invalid-archive error", case.name)),
            (None, Err(Error::InvalidArchive(_))) => {}
            (None, Err(e)) => failures.push(format!("{}: wrong error: {e}", case.name)),
        }
    }
    assert_eq!(all.len(), 33);
    assert!(failures.is_empty(), "openat2={}:\n{}", !no_openat2, failures.join("\n"));
}

#[test]
fn breakouts_openat2() {
    run(false);
}

#[test]
fn breakouts_fallback_resolver() {
    run(true);
}
