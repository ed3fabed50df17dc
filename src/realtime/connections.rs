//! Open streaming connections: counted per front end for the status page, and limited per
//! account and per client address so one client cannot hold the server's sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The front end a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    SocketIo,
}

impl Transport {
    fn index(self) -> usize {
        match self {
            Self::WebSocket => 0,
            Self::Sse => 1,
            Self::SocketIo => 2,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The account has `max` streams open already.
    PerUser { max: usize },
    /// The client address has `max` streams open already.
    PerAddress { max: usize },
}

/// Open connections by front end, account and address.
pub struct Connections {
    open: [AtomicUsize; 3],
    /// 0 turns a limit off.
    max_per_user: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    users: HashMap<u64, usize>,
    addresses: HashMap<IpAddr, usize>,
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Connections {
    pub fn new(max_per_user: usize, max_per_address: usize) -> Self {
        Self {
            open: Default::default(),
            max_per_user,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts a new connection of `user` from `address`, or refuses it over a limit. The
    /// connection is counted until the returned guard is dropped.
    pub fn open(
        self: &Arc<Self>,
        transport: Transport,
        user: u64,
        address: IpAddr,
    ) -> Result<ConnectionGuard, Refused> {
        let address = crate::auth::password_guard::limit_key(address);
        {
            let mut counts = self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let by_user = counts.users.get(&user).copied().unwrap_or(0);
            if self.max_per_user > 0 && by_user >= self.max_per_user {
                return Err(Refused::PerUser {
                    max: self.max_per_user,
                });
            }
            let by_address = counts.addresses.get(&address).copied().unwrap_or(0);
            if self.max_per_address > 0 && by_address >= self.max_per_address {
                return Err(Refused::PerAddress {
                    max: self.max_per_address,
                });
            }
            *counts.users.entry(user).or_default() += 1;
            *counts.addresses.entry(address).or_default() += 1;
        }
        self.open[transport.index()].fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionGuard {
            connections: Arc::clone(self),
            transport,
            user,
            address,
        })
    }

    /// Connections open now through `transport`.
    pub fn open_count(&self, transport: Transport) -> usize {
        self.open[transport.index()].load(Ordering::Relaxed)
    }
}

/// Keeps one connection counted; dropping it releases the slot.
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    transport: Transport,
    user: u64,
    address: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.open[self.transport.index()].fetch_sub(1, Ordering::Relaxed);
        let mut counts = self
            .connections
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        release(&mut counts.users, &self.user);
        release(&mut counts.addresses, &self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_user_and_per_address_until_released() {
        let connections = Arc::new(Connections::new(2, 3));
        let home: IpAddr = [192, 0, 2, 1].into();
        let office: IpAddr = [192, 0, 2, 2].into();
        let first = connections.open(Transport::WebSocket, 1, home).unwrap();
        let _second = connections.open(Transport::Sse, 1, home).unwrap();
        assert_eq!(
            connections.open(Transport::Sse, 1, office).err(),
            Some(Refused::PerUser { max: 2 })
        );
        let _third = connections.open(Transport::SocketIo, 2, home).unwrap();
        assert_eq!(
            connections.open(Transport::Sse, 3, home).err(),
            Some(Refused::PerAddress { max: 3 })
        );
        assert_eq!(connections.open_count(Transport::WebSocket), 1);
        drop(first);
        assert_eq!(connections.open_count(Transport::WebSocket), 0);
        assert!(connections.open(Transport::WebSocket, 1, office).is_ok());
    }

    #[test]
    fn zero_turns_the_limits_off() {
        let connections = Arc::new(Connections::new(0, 0));
        let address: IpAddr = [192, 0, 2, 1].into();
        let guards: Vec<_> = (0..100)
            .map(|_| connections.open(Transport::Sse, 1, address).unwrap())
            .collect();
        assert_eq!(connections.open_count(Transport::Sse), guards.len());
    }
}
