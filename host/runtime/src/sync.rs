//! The binary protocol between the runtime (parent) and its init helper, over
//! a `SOCK_SEQPACKET` socketpair: one message per packet, a tag byte and a
//! payload. Closing either end is seen as EOF by the other.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::cvt;

/// Largest packet: the init configuration (spec + compiled seccomp program).
const MAX_PACKET: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// parent -> helper: the serialized `InitConfig`.
    Config(Vec<u8>),
    /// helper -> parent: the init's pid (in the parent's pid namespace).
    Pid(i32),
    /// helper -> parent: in its new user namespace, write the id maps.
    UserNs,
    /// parent -> init: it is in the container's cgroups now.
    Attached,
    /// parent -> helper: id maps written; parent -> init: hooks run: go on.
    Go,
    /// init -> parent: mounts done, run prestart/createRuntime hooks now.
    Hooks,
    /// init -> parent: set up, blocked on the exec fifo (created), or, for
    /// an exec'd process, about to exec.
    Ready,
    /// either way: what failed and where.
    Error(String),
}

const T_CONFIG: u8 = 1;
const T_PID: u8 = 2;
const T_GO: u8 = 3;
const T_HOOKS: u8 = 4;
const T_READY: u8 = 5;
const T_ERROR: u8 = 6;
const T_USERNS: u8 = 7;
const T_ATTACHED: u8 = 8;

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Config(b) => [&[T_CONFIG][..], b].concat(),
            Msg::Pid(p) => [&[T_PID][..], &p.to_le_bytes()].concat(),
            Msg::Go => vec![T_GO],
            Msg::UserNs => vec![T_USERNS],
            Msg::Attached => vec![T_ATTACHED],
            Msg::Hooks => vec![T_HOOKS],
            Msg::Ready => vec![T_READY],
            Msg::Error(e) => [&[T_ERROR][..], e.as_bytes()].concat(),
        }
    }

    pub fn decode(b: &[u8]) -> io::Result<Msg> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad sync message {b:?}"));
        let (&tag, rest) = b.split_first().ok_or_else(bad)?;
        Ok(match tag {
            T_CONFIG => Msg::Config(rest.to_vec()),
            T_PID => Msg::Pid(i32::from_le_bytes(rest.try_into().map_err(|_| bad())?)),
            T_GO => Msg::Go,
            T_USERNS => Msg::UserNs,
            T_ATTACHED => Msg::Attached,
            T_HOOKS => Msg::Hooks,
            T_READY => Msg::Ready,
            T_ERROR => Msg::Error(String::from_utf8_lossy(rest).into_owned()),
            _ => return Err(bad()),
        })
    }
}

/// One end of the sync socketpair.
#[derive(Debug)]
pub struct SyncSocket(pub OwnedFd);

impl SyncSocket {
    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> io::Result<(SyncSocket, SyncSocket)> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-element array.
        cvt(unsafe {
            libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
        })?;
        // SAFETY: fresh descriptors we own.
        unsafe { Ok((SyncSocket(OwnedFd::from_raw_fd(fds[0])), SyncSocket(OwnedFd::from_raw_fd(fds[1])))) }
    }

    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        let buf = msg.encode();
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(());
        }
    }

    /// The next message; `UnexpectedEof` when the other side closed.
    pub fn recv(&self) -> io::Result<Msg> {
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the other side exited"));
            }
            return Msg::decode(&buf[..n as usize]);
        }
    }

    /// Waits for `want`; an `Error` message becomes an error.
    pub fn expect(&self, want: &Msg) -> anyhow::Result<()> {
        match self.recv()? {
            m if &m == want => Ok(()),
            Msg::Error(e) => Err(anyhow::anyhow!("{e}")),
            other => Err(anyhow::anyhow!("expected {want:?}, got {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_over_a_socketpair() {
        let (a, b) = SyncSocket::pair().unwrap();
        for m in [
            Msg::Config(b"{\"x\":1}".to_vec()),
            Msg::Pid(4242),
            Msg::Go,
            Msg::UserNs,
            Msg::Attached,
            Msg::Hooks,
            Msg::Ready,
            Msg::Error("mount /proc: EPERM".into()),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), m);
        }
        drop(a);
        assert_eq!(b.recv().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn expect_turns_error_messages_into_errors() {
        let (a, b) = SyncSocket::pair().unwrap();
        a.send(&Msg::Error("pivot_root: EINVAL".into())).unwrap();
        assert!(b.expect(&Msg::Ready).unwrap_err().to_string().contains("pivot_root"));
    }
}
