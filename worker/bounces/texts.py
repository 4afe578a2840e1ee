"""What servers say, and the reason it means: the phrase tables the classifier reads.

Two tables, both ordered (the first phrase that matches decides):

- ``PROVIDER_PHRASES``: the mailbox providers' own wording (Gmail, Yahoo, Outlook/Office 365,
  AOL, iCloud, mail.ru, web.de...). Each is unambiguous, so it is read first.
- ``PHRASES``: what MTAs write (Postfix, Exim, Sendmail, qmail, Exchange, Domino, Courier,
  IMail, MailEnable...) and what people write in them, by reason. The order settles overlaps:
  a full mailbox before an unknown user ("mailbox full" names a mailbox), a refused sender before
  a refused recipient, a block list before the generic word "blocked", an expiry before the
  network error that caused it.

Learnt from reading real bounces and sisimai's rules; the patterns are ours.
"""

from __future__ import annotations

import re
from typing import Final

PROVIDER_PHRASES: Final[tuple[tuple[str, str], ...]] = (
    # Gmail
    (r"email account that you tried to reach (does not exist|is not found)", "userunknown"),
    (r"email account that you tried to reach is disabled", "suspend"),
    (
        r"email account that you tried to reach is over quota|OverQuotaTemp|OverQuotaPerm",
        "mailboxfull",
    ),
    (
        r"receiving mail at a rate that prevents additional messages|"
        r"receiving mail too quickly",
        "ratelimited",
    ),
    (
        r"this mail is unauthenticated|does not pass (dmarc|spf|dkim)|"
        r"(fails to pass|fail) (spf|dkim|dmarc)|\bdmarc (policy|verification)",
        "authfailure",
    ),
    (
        r"low reputation of the sending (domain|ip)|very low reputation|"
        r"poor reputation|reputation of (your|the sending)",
        "badreputation",
    ),
    (r"unusual rate of unsolicited mail|has detected an unusual rate", "ratelimited"),
    (r"likely unsolicited mail|UnsolicitedMessageError", "spamdetected"),
    (
        r"not RFC ?5322 compliant|does not comply with RFC ?5322|RFC ?5322 section",
        "notcompliantrfc",
    ),
    (
        r"does not meet IPv6 sending guidelines|PTR record (setup|for the sending)|"
        r"IP address has no PTR",
        "requireptr",
    ),
    (r"TLS (is )?required|must use TLS|STARTTLS is required", "failedstarttls"),
    # Yahoo and AOL (Verizon Media)
    (
        r"\bdd This user doesn't have an? \S+ account|This user doesn't have an? \S+ account",
        "userunknown",
    ),
    (r"account has been disabled or discontinued|This mailbox is disabled \(554\.30\)", "suspend"),
    (r"This account is over quota|E4\.12 user MAILBOX FULL", "mailboxfull"),
    (
        r"\[TSS?0[1-4]\]|temporarily deferred due to (unexpected volume|user complaints)",
        "ratelimited",
    ),
    (r"\[TSS09\]|permanently deferred", "blocked"),
    (r"MAILBOX NOT FOUND", "userunknown"),
    (
        r"not accepting mail from|"
        r"only accepting mail from specific email addresses",
        "filtered",
    ),
    # Outlook, Hotmail and Office 365
    (
        r"RESOLVER\.ADR\.Recip(ient)?NotFound|RESOLVER\.ADR\.ExRecipNotFound|"
        r"Recipient not found by SMTP address lookup",
        "userunknown",
    ),
    (r"RESOLVER\.RST\.RecipSizeLimit", "mesgtoobig"),
    (r"RESOLVER\.RST\.SendSizeLimit", "exceedlimit"),
    (
        r"banned sending IP|part of their network is on our block list|\(S3150\)|"
        r"5\.7\.(6[0-4]\d|7[0-4]\d|750)\b",
        "blocked",
    ),
    (r"RESOLVER\.RST\.NotAuthorized|RESOLVER\.RST\.AuthRequired", "securityerror"),
    # iCloud / me.com
    (r"recipient no longer on server", "hasmoved"),
    # mail.ru, web.de, qq.com, 163.com
    (r"Benutzer hat zuviele Mails|user has too many messages", "mailboxfull"),
    (r"user not found|invalid mailbox", "userunknown"),
)

PHRASES: Final[tuple[tuple[str, str], ...]] = (
    # The recipient's mailbox is full (before "mailbox" as in "mailbox unavailable").
    (
        r"mailbox size limit|mail ?box (is |was )?full|full mailbox|over ?quota|quota (exceeded|"
        r"violation)|exceed(ed|s)? (the |their |his |her |its )?(mailbox |storage |disk |disc )?"
        r"(quota|storage|limit)|disk space limit|insufficient (disk )?space|not enough (disk )?"
        r"(space|storage)|mailfolder is full|user's disk quota|disc quota|mailbox space not enough|"
        r"would exceed mailbox quota|over disk quota|out of (disk|storage) space|"
        r"storage (space )?(is )?full|mailbox (is )?over|quota has been exceeded|disk quota|"
        r"reached (its |the |their )?(disk )?quota|exceeding (their|its|the) quota|account is full|"
        r"mailbox exceeds allowed size",
        "mailboxfull",
    ),
    (
        r"does not have enough space|exceeded storage allocation|mail quota exceeded|"
        r"space has been used up|is over (the )?quota|would be over the allowed quota|"
        r"too much mail data|boite du destinataire pleine",
        "mailboxfull",
    ),
    # The message is too big.
    (
        r"message (size )?(exceeds|is larger than|too (big|large|long))|message size \d+ exceeds|"
        r"size limit|exceeds? (the )?(maximum|fixed) (message )?size|max(imum)? message size|"
        r"message too large|SIZE=Message too big|exceeded maximum inbound message size",
        "mesgtoobig",
    ),
    (
        r"mail file size exceeds",
        "mesgtoobig",
    ),
    # The account exists but is disabled or suspended.
    (
        r"account (is |has been )?(disabled|deactivated|suspended|locked|inactive|frozen)|"
        r"mailbox (currently )?(suspended|disabled|deactivated)|is a deactivated mailbox|"
        r"\[SUSPEND\]|user suspended|invalid/inactive user|inactive (user|account)|"
        r"mailbox unavailable or access denied",
        "suspend",
    ),
    # The recipient moved.
    (
        r"mailbox (has )?moved|user has moved|address has changed|no longer (with|at|works)|"
        r"changed (his|her|their) (e-?mail )?address",
        "hasmoved",
    ),
    # Greylisting: the receiver refuses our IP until we come back later.
    (r"greylist|graylist|grey-list|gray-list", "blocked"),
    (
        r"blacklisted by|rejected based on blacklist|not currently accepting mail from your ip|"
        r"dynamic/zombied|hosts with dynamic ip|dynamic ips|sender ip address rejected|"
        r"listed as abusive|too many spams from your ip|network is temporar(il)?y blacklisted|"
        r"is blocked by earthlink|was blocked by|access from ip address .{0,60} blocked|"
        r"mail server at .{0,80} is blocked|you are not allowed to connect|rejecting open proxy",
        "blocked",
    ),
    # Relaying refused: the recipient's domain is not served where we sent.
    (
        r"relay(ing)? (access )?(denied|not (permitted|allowed))|not permitted to relay|"
        r"unable to relay|relay not permitted|list of allowed rcpthosts|"
        r"you are trying to use me .{0,80} as a relay|we do not relay",
        "norelaying",
    ),
    # Our envelope sender is refused.
    (
        r"sender verify failed|sender address rejected|sender (address |domain )?(is )?"
        r"(invalid|unknown|not allowed|rejected|blocked|denied)|verification failed for <|"
        r"domain of sender address .{0,80} does not (exist|resolve)|bad sender|"
        r"sender (has|with) (a )?null mx",
        "rejected",
    ),
    (
        r"empty envelope senders not allowed|null sender is not allowed|invalid sender|"
        r"returned mail not accepted here|unroutable sender address|mail from not owned by user|"
        r"sender is spammer|your email address has been blacklisted|"
        r"too many spam complaints|outgoing mail suspension|administrative prohibition|"
        r"is a dead domain",
        "rejected",
    ),
    # Challenge-response systems hold our mail until we prove we are a person.
    (r"not pre-approved|challenge[- ]response", "securityerror"),
    # Authentication of our mail failed.
    (
        r"\bspf\b.{0,20}\b(fail|failed|failure|softfail|reject|check|validation)|"
        r"sender policy framework|\b(dkim|dmarc)\b.{0,20}\b(fail|failed|failure|reject|policy|"
        r"verification)|unauthenticated|not authenticated|authentication (failed|failure|required)|"
        r"sender (is )?not authori[sz]ed|\bsender ?id\b",
        "authfailure",
    ),
    # Our IP has no reverse DNS.
    (
        r"reverse dns|no ptr|ptr record|reverse (lookup|resolution)|no rdns|rdns (lookup )?fail",
        "requireptr",
    ),
    (
        r"ptr-records|invalid rdns|ip name lookup failed|cannot find your hostname|"
        r"forward dns entry does not point to the sending ip|unresolvable relay host name|"
        r"mismatches client ip|unverif(i|y)able sending ips",
        "requireptr",
    ),
    # Our IP or domain is on a block list.
    (
        r"blocked using (?!spam)|\(SENT_HELO\)|HELO command rejected|"
        r"\bspamhaus\b|\bspamcop\b|\bsorbs\b|\bsurbl\b|\brbl\b|\bdnsbl\b|"
        r"black ?list|block ?list|deny ?list|(?<!not )\blisted (at|on|in|by)\b|"
        r"client host .{0,80} blocked|\bip (address )?.{0,40}(blocked|banned)|"
        r"requires confirmation|your server requires|"
        r"JunkEmailFilter|REJECTED - Server at",
        "blocked",
    ),
    # Too many of our messages or connections.
    (
        r"rate limit|rate[- ]limited|too many (messages|emails|mails|recipients)|"
        r"sending (quota|limit)|throttl|please slow down|try again later.{0,40}too fast",
        "ratelimited",
    ),
    (
        r"please try again slower|max emails per hour",
        "ratelimited",
    ),
    (r"too many (connections|concurrent|simultaneous)|connection limit", "toomanyconn"),
    (
        r"too many (smtp sessions|errors from your ip)|connection (rate )?limit|"
        r"trop de connexions|maximum connection limit",
        "toomanyconn",
    ),
    # Our content carried a virus.
    (r"\bvirus\b|malware|infected|\bworm\b|trojan", "virusdetected"),
    (
        r"potentially executable attachment|form of attachment has been used",
        "virusdetected",
    ),
    # Our content looks like spam.
    (
        r"\bspam\b|antispam|anti-spam|spamming|unsolicited|bulk (e-?mail|mail)|\bUBE\b|\bjunk\b|"
        r"mass mailer|"
        r"spamassassin|spam-?id|spam ?score|content filter(ing)? rejection|CONTENT REJECT|"
        r"\bdspam\b|MCSpamSignature|SpamProfiler|appears similar to spam|spam content|"
        r"uribl|classification as bulk",
        "spamdetected",
    ),
    (
        r"probable spam|message filtered|mail content denied|rejected for policy reasons|"
        r"recurrent pattern detection|spam-like|spam points|unacceptable content|banned content",
        "spamdetected",
    ),
    # Our message broke a local policy.
    (
        r"policy reasons|policy violation|violat(es|ion of) (our|the|local) policy|"
        r"security policies|message not accepted for policy|awaits moderator approval|"
        r"held until the list moderator",
        "policyviolation",
    ),
    (
        r"closed mailing list|denied by policy|"
        r"not accepting mail with (attachments|embedded images)|message given low priority|"
        r"messages with multiple addresses|protocol violation|header are not accepted",
        "policyviolation",
    ),
    # Our message is malformed.
    (
        r"improper use of 8-bit|8-?bit data in (the )?(message )?header|header (error|syntax)|"
        r"invalid (mime|header)|too many received headers",
        "contenterror",
    ),
    (
        r"too many received: headers|mime complexity exceeds|"
        r"improperly-formatted binary content|unnecessary base64|"
        r"header size, or recipient list, exceeds",
        "contenterror",
    ),
    (
        r"No Resent-From field|message is not RFC|malformed header|duplicate header",
        "notcompliantrfc",
    ),
    # The remote system failed (mail loops included).
    (
        r"loops back to myself|local configuration error|system error|internal (server )?error|"
        r"local problem|"
        r"encountered an error while being processed|"
        r"not unique\. Several matches|service (currently )?unavailable",
        "systemerror",
    ),
    (
        r"local error in processing|configuration error|queue file write error|"
        r"can't create user output file|remote server is misconfigured|"
        r"would create a mail loop|loop was found in the mail exchanger|"
        r"interrupted system call|timeout waiting for input|no mdb",
        "systemerror",
    ),
    (r"Command output:|command died|child status|mailer .{0,40}exited|X-Unix", "mailererror"),
    (r"system (is )?full|insufficient system storage|mail system full", "systemfull"),
    # We gave up after retrying (before the network errors that made us retry).
    (
        r"retry time(out)? (was )?(exceeded|expired)|delivery time expired|message expired|"
        r"queue\.expired|has been in the queue too long|could not be delivered for \d+ days|"
        r"not (been )?delivered (with)?in \d+ (day|hour)|Maximum-Time-Expired|"
        r"exceeded maximum delivery attempts|all hosts have been failing for a long time|"
        r"not reachable within the allowed queue period|Delivery failed \d+ attempts|"
        r"after \d+ attempt\(s\) to deliver|could not find a gateway|gave up|given up on it|"
        r"TEMP_FAILURE|not been collected after \d+ days",
        "expired",
    ),
    (
        r"message timed out|could not be delivered for more than|after \d+ tries|"
        r"retry time not reached for any host after a long failure period",
        "expired",
    ),
    # A name server that failed for now says nothing about the domain.
    (r"host not found, try again|temporary failure in name resolution", "networkerror"),
    (
        r"unrouteable mail domain|unroutable mail domain|hop count exceeded|"
        r"mail forwarding loop for|forwarding loop count exceeded|host is unreachable|"
        r"host name lookup failure|unable to resolve route|"
        r"dns records for the destination computer could not be found",
        "networkerror",
    ),
    # The recipient's domain does not exist.
    (
        r"host or domain name not found|domain (name )?not found|no such domain|"
        r"domain (does not|doesn't) exist|"
        r"unrouteable address|unroutable address|"
        r"couldn't find any host named|could not find any host|name or service not known|"
        r"\bhost unknown\b|unknown host|no (valid )?(mx|mail exchanger) (record|host)s?\b|"
        r"name server: .{0,80}host not found|DNS Error: Domain name not found",
        "hostunknown",
    ),
    (
        r"domain is not reachable|domain must exist|host unreachable|"
        r"mail domain mentioned in email address is unknown|unknown domain name",
        "hostunknown",
    ),
    # Something between us and them failed.
    (
        r"host not found, try again|malformed( or unexpected)? name server reply|"
        r"temporary failure in name resolution|connection (refused|timed out|reset|dropped)|"
        r"no route to host|network is unreachable|lost connection|timed out|"
        r"unable to connect|could not connect|couldn't connect|wasn't able to establish|"
        r"could not initiate smtp conversation|connection to mail exchanger failed|"
        r"is not responding|dns (timeout|error)|no MX or A for domain|message looping|"
        r"too many hops|routing loop",
        "networkerror",
    ),
    # The recipient filters us (a member's settings, challenge-response).
    (
        r"account is protected by|user refuses|refused due to recipient preferences|"
        r"message rejected due to user rules|you have been blocked by the recipient",
        "filtered",
    ),
    # The recipient does not exist.
    (
        r"user unknown|unknown user|no such (user|recipient|mailbox|address|person|account|local)|"
        r"(user|recipient|address|mailbox|account|addressee) (was )?(not found|unknown)|"
        r"(recipient|user|mailbox|account|address) (does not|doesn't|did not) exist|"
        r"does not exist|doesn't exist|n'existe pas|nie istnieje|not a (valid|known) "
        r"(user|mailbox|recipient|address)|not an active address|invalid (recipient|mailbox|"
        r"address|user)|unknown (recipient|mailbox|local[- ]part|alias|address)|"
        r"no mail ?box (here|found|available)|user not known|"
        r"mailbox (not available|unavailable|not found)|"
        r"bad destination mailbox|bad_?recipient|badrcptto|not listed in (public Name|Domino)|"
        r"recipient name is not recognized|recipient rejected|recipient address rejected|"
        r"addressee unknown|invalid final delivery userid|"
        r"no longer valid|is not a known user|"
        r"not have a final email delivery point|no matches to nameserver query|"
        r"did not exactly match|access denied\. AS\(",
        "userunknown",
    ),
    (
        r"archived recipient|can't accept user|destination addresses were unknown|"
        r"destination server rejected recipients|email address could not be found|"
        r"invalid mailbox|mailbox is inactive|mailbox not present|no account by that name|"
        r"no such person at this address|non-?existent user|not a local address|"
        r"recipient is not local|recipient not (found|ok)|there is no one at this address|"
        r"address no longer accepts mail|missing home directory|user not active|"
        r"invalid or unknown virtual user|no valid recipients|in my badrcptto list|"
        r"#5\.1\.1 bad address|the following recipients was undeliverable|"
        r"email name is not found",
        "userunknown",
    ),
)
"""MTAs' and people's words, by reason; the first match decides."""

DATA_STAGE: Final = re.compile(
    r"end of data|after end of data|>>> DATA|after DATA|in reply to DATA", re.IGNORECASE
)
"""A refusal after the message was sent: an "unknown user" then is the recipient's filter."""

_PROVIDER_RULES: Final = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in PROVIDER_PHRASES
)
_RULES: Final = tuple((re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in PHRASES)


def provider_reason(text: str) -> str | None:
    """The reason a mailbox provider's own wording gives, or None."""
    return _first(_PROVIDER_RULES, text)


def phrase_reason(text: str) -> str | None:
    """The reason an MTA's (or a person's) wording gives, or None."""
    return _first(_RULES, text)


def _first(rules: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    for pattern, reason in rules:
        if pattern.search(text):
            return reason
    return None
