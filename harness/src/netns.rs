//! Network namespaces held by file descriptors.
//!
//! A namespace lives exactly as long as something refers to it: our descriptor, a
//! socket created inside it, or a process in it. Holding it by descriptor (never by a
//! bind mount under /run/netns) means that when this process dies, however it dies, the
//! kernel frees every namespace and every interface in it.
//!
//! Entering a namespace is per thread. [`NetNs::run`] does it on a fresh scoped thread
//! that ends with the closure, so no thread of ours is ever left in the wrong namespace,
//! even when the closure panics.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug)]
pub struct NetNs {
    name: String,
    fd: OwnedFd,
}

impl NetNs {
    /// A new, empty network namespace (only `lo`, down). `name` is for messages only:
    /// nothing is registered under it anywhere.
    pub fn create(name: &str) -> io::Result<NetNs> {
        let fd = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<OwnedFd> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Ok(File::open("/proc/thread-self/ns/net")?.into())
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
        })?;
        Ok(NetNs { name: name.to_string(), fd })
    }

    /// Many new namespaces at once, each made on a thread of its own that first runs
    /// `init` inside it (sysctls that must be in place before any interface exists,
    /// a netlink socket that stays bound to it), then ends. Up to `PARALLEL` threads
    /// at a time.
    pub fn create_many<T, F>(names: &[&str], init: F) -> Vec<io::Result<(NetNs, T)>>
    where
        T: Send,
        F: Fn() -> io::Result<T> + Sync,
    {
        const PARALLEL: usize = 16;
        let mut made = Vec::with_capacity(names.len());
        for chunk in names.chunks(PARALLEL) {
            std::thread::scope(|s| {
                let threads: Vec<_> = chunk
                    .iter()
                    .map(|name| {
                        let init = &init;
                        s.spawn(move || -> io::Result<(NetNs, T)> {
                            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                            let fd: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
                            let made = init()?;
                            Ok((NetNs { name: name.to_string(), fd }, made))
                        })
                    })
                    .collect();
                for t in threads {
                    made.push(t.join().unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked"))));
                }
            });
        }
        made
    }

    /// A namespace some program made, opened by a path such as `/proc/PID/ns/net`.
    /// Held by our descriptor from here on, like one we created.
    pub fn open(name: &str, path: &std::path::Path) -> io::Result<NetNs> {
        let fd: OwnedFd = File::open(path)?.into();
        Ok(NetNs { name: name.to_string(), fd })
    }

    /// Another handle on the same namespace; the namespace lives while either does.
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs { name: self.name.clone(), fd: self.fd.try_clone()? })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Run `f` on a thread inside this namespace. Sockets `f` creates belong to the
    /// namespace for their whole life, wherever they are used afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| -> io::Result<T> {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other(format!("thread in namespace {} panicked", self.name)))?
        })
    }

    /// Write sysctls (dotted keys, `net.*` only) inside this namespace.
    pub fn write_sysctls<'a>(&self, items: impl IntoIterator<Item = (&'a str, &'a str)> + Send) -> io::Result<()> {
        self.run(|| {
            for (key, value) in items {
                write_sysctl(key, value)?;
            }
            Ok(())
        })?
    }

    /// Read a sysctl inside this namespace.
    pub fn read_sysctl(&self, key: &str) -> io::Result<String> {
        self.run(|| read_sysctl(key))?
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn sysctl_path(key: &str) -> io::Result<std::path::PathBuf> {
    // Only net.* is per network namespace; anything else would change the machine.
    if !key.starts_with("net.") || key.contains("..") || key.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing sysctl {key}: only net.* keys are per network namespace"),
        ));
    }
    Ok(std::path::Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// Write one sysctl in the calling thread's network namespace. /proc/sys/net resolves
/// against the namespace of the thread that opens the file.
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}

pub fn read_sysctl(key: &str) -> io::Result<String> {
    let path = sysctl_path(key)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}: {e}")))
}
