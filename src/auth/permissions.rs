//! Who may do what: one function, called by every handler that touches data.
//!
//! Resources a caller may not see answer "not found", not "forbidden", so that probing
//! ids reveals nothing about other people's numbers and leases.

use crate::store::Role;

/// The authenticated account behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: u64,
    pub role: Role,
    /// The login session, when the caller came with an access token (not HTTP Basic).
    pub session_id: Option<u64>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Everything a handler may ask permission for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Every message of every inbox, including the unrouted one.
    ReadAllMessages,
    /// Add, change or remove pool numbers.
    ManagePool,
    /// Create and manage accounts.
    ManageUsers,
    /// See, add, change or remove provider instances (their secrets never leave).
    ManageProviders,
    /// Server status and statistics.
    ViewSystem,
    /// Take a number from the pool.
    Lease,
    /// See a number and read its current inbox.
    ReadNumber { public: bool, holder: Option<u64> },
    /// Extend or release a lease.
    ManageLease { holder: u64 },
    /// Mark read or delete one message; `holder` is the holder of the lease it belongs
    /// to (none for public and idle inboxes, which only admins manage).
    ManageMessage { holder: Option<u64> },
    /// Change one's own password or e-mail address (guests have neither: their account
    /// ends with the session).
    ManageOwnAccount,
    /// Send SMS at all: admins; users when the admin allows it (`users_may_send`);
    /// guests never (anonymous senders would make the server a spam relay).
    SendSms { users_may_send: bool },
    /// Send from one pool number: the holder of its active lease (admins: any number).
    SendFrom { holder: Option<u64> },
    /// See an outbound message: the user who sent it.
    ReadOutbound { sender: u64 },
    /// Register and list outbound webhooks: users and admins (a guest's account ends
    /// with its session, and anonymous callers should not make the server call
    /// arbitrary URLs).
    RegisterWebhooks,
    /// See, test or delete one webhook: its owner. Admins see only their own too, so
    /// that other users' URLs (often carrying tokens) are never shown.
    ManageWebhook { owner: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The caller knows the resource exists but may not do this (403).
    Forbidden,
    /// The caller may not know the resource exists (404).
    Hidden,
}

pub fn authorize(caller: &Caller, action: Action) -> Result<(), Denied> {
    // Webhooks are the one thing admins do not see of others (see `ManageWebhook`).
    if caller.is_admin() && !matches!(action, Action::ManageWebhook { .. }) {
        return Ok(());
    }
    match action {
        Action::ReadAllMessages
        | Action::ManagePool
        | Action::ManageUsers
        | Action::ManageProviders
        | Action::ViewSystem => Err(Denied::Forbidden),
        Action::Lease => Ok(()),
        Action::ManageOwnAccount | Action::RegisterWebhooks => match caller.role {
            Role::Guest => Err(Denied::Forbidden),
            Role::User | Role::Admin => Ok(()),
        },
        Action::ReadNumber { public, holder } => {
            if public || holder == Some(caller.user_id) {
                Ok(())
            } else {
                Err(Denied::Hidden)
            }
        }
        Action::ManageLease { holder } => {
            if holder == caller.user_id {
                Ok(())
            } else {
                Err(Denied::Hidden)
            }
        }
        Action::ManageMessage { holder } | Action::SendFrom { holder } => {
            if holder == Some(caller.user_id) {
                Ok(())
            } else {
                Err(Denied::Hidden)
            }
        }
        Action::SendSms { users_may_send } => match caller.role {
            Role::User if users_may_send => Ok(()),
            Role::User | Role::Guest | Role::Admin => Err(Denied::Forbidden),
        },
        Action::ReadOutbound { sender } | Action::ManageWebhook { owner: sender } => {
            if sender == caller.user_id {
                Ok(())
            } else {
                Err(Denied::Hidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn caller(user_id: u64, role: Role) -> Caller {
        Caller {
            user_id,
            role,
            session_id: None,
        }
    }
    const ADMIN: Caller = caller(1, Role::Admin);
    const ALICE: Caller = caller(2, Role::User);
    const GUEST: Caller = caller(3, Role::Guest);

    #[test]
    fn admins_may_do_everything_and_others_only_their_own() {
        let admin_only = [
            Action::ReadAllMessages,
            Action::ManagePool,
            Action::ManageUsers,
            Action::ManageProviders,
            Action::ViewSystem,
        ];
        for action in admin_only {
            assert_eq!(authorize(&ADMIN, action), Ok(()));
            assert_eq!(authorize(&ALICE, action), Err(Denied::Forbidden));
            assert_eq!(authorize(&GUEST, action), Err(Denied::Forbidden));
        }
        let alices = Action::ReadNumber {
            public: false,
            holder: Some(2),
        };
        assert_eq!(authorize(&ALICE, alices), Ok(()));
        assert_eq!(authorize(&GUEST, alices), Err(Denied::Hidden));
        assert_eq!(authorize(&ADMIN, alices), Ok(()));
        let public = Action::ReadNumber {
            public: true,
            holder: None,
        };
        assert_eq!(authorize(&GUEST, public), Ok(()));
        let idle = Action::ReadNumber {
            public: false,
            holder: None,
        };
        assert_eq!(authorize(&ALICE, idle), Err(Denied::Hidden));
        assert_eq!(
            authorize(&GUEST, Action::ManageLease { holder: 2 }),
            Err(Denied::Hidden)
        );
        assert_eq!(authorize(&GUEST, Action::Lease), Ok(()));
        assert_eq!(authorize(&ALICE, Action::ManageOwnAccount), Ok(()));
        assert_eq!(
            authorize(&GUEST, Action::ManageOwnAccount),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            authorize(&ALICE, Action::ManageMessage { holder: Some(2) }),
            Ok(())
        );
        assert_eq!(
            authorize(&ALICE, Action::ManageMessage { holder: None }),
            Err(Denied::Hidden)
        );
        assert_eq!(
            authorize(&ADMIN, Action::ManageMessage { holder: None }),
            Ok(())
        );
    }

    #[test]
    fn sending_is_for_admins_and_permitted_users_from_their_own_numbers() {
        for allowed in [false, true] {
            let send = Action::SendSms {
                users_may_send: allowed,
            };
            assert_eq!(authorize(&ADMIN, send), Ok(()));
            assert_eq!(authorize(&GUEST, send), Err(Denied::Forbidden));
            let alice = if allowed {
                Ok(())
            } else {
                Err(Denied::Forbidden)
            };
            assert_eq!(authorize(&ALICE, send), alice);
        }
        assert_eq!(
            authorize(&ALICE, Action::SendFrom { holder: Some(2) }),
            Ok(())
        );
        assert_eq!(
            authorize(&ALICE, Action::SendFrom { holder: Some(3) }),
            Err(Denied::Hidden)
        );
        assert_eq!(authorize(&ADMIN, Action::SendFrom { holder: None }), Ok(()));
        assert_eq!(
            authorize(&ALICE, Action::ReadOutbound { sender: 2 }),
            Ok(())
        );
        assert_eq!(
            authorize(&GUEST, Action::ReadOutbound { sender: 2 }),
            Err(Denied::Hidden)
        );
    }

    #[test]
    fn webhooks_are_for_accounts_and_seen_only_by_their_owner() {
        assert_eq!(authorize(&ALICE, Action::RegisterWebhooks), Ok(()));
        assert_eq!(authorize(&ADMIN, Action::RegisterWebhooks), Ok(()));
        assert_eq!(
            authorize(&GUEST, Action::RegisterWebhooks),
            Err(Denied::Forbidden)
        );
        let alices = Action::ManageWebhook { owner: 2 };
        assert_eq!(authorize(&ALICE, alices), Ok(()));
        assert_eq!(authorize(&GUEST, alices), Err(Denied::Hidden));
        // Not even admins: webhook URLs often carry the receiver's token.
        assert_eq!(authorize(&ADMIN, alices), Err(Denied::Hidden));
        assert_eq!(
            authorize(&ADMIN, Action::ManageWebhook { owner: 1 }),
            Ok(())
        );
    }
}
