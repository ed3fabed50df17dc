//! The texts burnbox mails. Plain text only: links survive every mail client, and there
//! is no HTML to render remote content from.

use std::time::Duration;

/// One e-mail's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub body: String,
}

/// Asks the owner of a new account to confirm the address.
pub fn verify_email(username: &str, link: &str, valid_for: Duration) -> Letter {
    Letter {
        subject: "Confirm your burnbox account".into(),
        body: format!(
            "Hello {username},\n\n\
             someone (we hope you) created the burnbox account \"{username}\" with this address.\n\
             To confirm it, open this link within {valid}:\n\n\
             {link}\n\n\
             If it was not you, ignore this message: without the confirmation the account\n\
             stays locked.\n",
            valid = in_words(valid_for),
        ),
    }
}

/// Carries a password-reset link.
pub fn password_reset(username: &str, link: &str, valid_for: Duration) -> Letter {
    Letter {
        subject: "Reset your burnbox password".into(),
        body: format!(
            "Hello {username},\n\n\
             a password reset was asked for your burnbox account. To choose a new password,\n\
             open this link within {valid}:\n\n\
             {link}\n\n\
             The link works once. If you did not ask for it, ignore this message: your\n\
             password stays as it is.\n",
            valid = in_words(valid_for),
        ),
    }
}

/// Tells the owner their password changed, so a takeover does not go unnoticed.
pub fn password_changed(username: &str) -> Letter {
    Letter {
        subject: "Your burnbox password was changed".into(),
        body: format!(
            "Hello {username},\n\n\
             the password of your burnbox account was just changed, and every other session\n\
             of the account was logged out.\n\n\
             If this was not you, reset your password at once and tell the server's admin.\n"
        ),
    }
}

/// Tells the previous address that the account moved to another one, so a takeover
/// that changes the address does not go unnoticed. The new address is not named: this
/// mail may be read by whoever lost the account.
pub fn email_changed(username: &str) -> Letter {
    Letter {
        subject: "Your burnbox e-mail address was changed".into(),
        body: format!(
            "Hello {username},\n\n\
             the e-mail address of your burnbox account was just changed, and mail for the\n\
             account (password resets included) no longer comes here.\n\n\
             If this was not you, tell the server's admin at once.\n"
        ),
    }
}

/// "24 hours", "1 hour", "30 minutes": how long a link works, as a person says it.
fn in_words(duration: Duration) -> String {
    let minutes = duration.as_secs().div_ceil(60).max(1);
    let (count, unit) = if minutes.is_multiple_of(60) {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_lifetimes_are_in_the_text() {
        let letter = verify_email(
            "alice",
            "https://x/auth/verify-email?token=t",
            Duration::from_secs(86400),
        );
        assert!(
            letter
                .body
                .contains("https://x/auth/verify-email?token=t\n")
        );
        assert!(letter.body.contains("within 24 hours"));
        let letter = password_reset("alice", "https://x/r", Duration::from_secs(3600));
        assert!(letter.body.contains("within 1 hour"));
        assert_eq!(in_words(Duration::from_secs(90)), "2 minutes");
    }
}
