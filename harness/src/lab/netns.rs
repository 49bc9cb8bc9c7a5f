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

/// Namespaces as [`NetNs::create_streamed`] hands them over: position and result.
pub type Made<T> = tokio::sync::mpsc::UnboundedReceiver<Arrival<T>>;

/// One namespace from [`NetNs::create_streamed`]: its position, and it with what
/// `init` made in it.
pub type Arrival<T> = (usize, io::Result<(NetNs, T)>);

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

    /// New namespaces for `names`, made on a few threads of their own. Each thread
    /// makes one namespace after another: it moves itself into a new one, opens it,
    /// runs `init(position)` inside it (sysctls that must be in place before any
    /// interface exists, a netlink socket that stays bound to it), and hands it over
    /// on the returned channel with its position in `names`, in whatever order they
    /// get ready. Making stops early once the receiver is dropped; namespaces not yet
    /// handed over are then freed with their descriptors.
    pub fn create_streamed<T, F>(names: Vec<String>, init: F) -> Made<T>
    where
        T: Send + 'static,
        F: Fn(usize) -> io::Result<T> + Send + Sync + 'static,
    {
        // Much of a namespace's making holds the kernel's one rtnl lock, and so does
        // wiring up the namespaces already made: more threads than half the cores
        // only spin on that lock, taking CPU time from whoever holds it.
        let parallel = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let names = std::sync::Arc::new(names);
        let init = std::sync::Arc::new(init);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..parallel.min(names.len()) {
            let (tx, names, init, next) = (tx.clone(), names.clone(), init.clone(), next.clone());
            // Should no thread start, the channel closes at once: the receiver learns
            // it from a `None`.
            let spawned = std::thread::Builder::new().name("netns".into()).spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= names.len() || tx.is_closed() {
                    return;
                }
                let made = (|| {
                    unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    let fd: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
                    let ns = NetNs { name: names[i].clone(), fd };
                    Ok((ns, init(i)?))
                })();
                if tx.send((i, made)).is_err() {
                    return;
                }
            });
            if spawned.is_err() {
                break;
            }
        }
        rx
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
