import copy
import email
import email.policy
import random
from email.generator import Generator
from email.policy import Compat32

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from hypothesis import given
from hypothesis import strategies as st

from delivery.channels import provider_class
from delivery.channels.base import Code, Fault, Outgoing, ProviderError
from delivery.channels.email import _SMTP_POLICY, HEADER_MESSAGE_ID, envelope_recipient, smtp_bytes

CONTENT = {
    "subject": "Login from a new device",
    "text": "Hi Ada, was it you?",
    "html": "<p>Hi Ada, was it <b>you</b>?</p>",
}


def outgoing(to="ada@example.com", message_id="msg-1", **content) -> Outgoing:
    return Outgoing(message_id=message_id, to=to, content={**CONTENT, **content})


def smtp(server, **config):
    config = {"host": server.host, "port": server.port, "from_email": "AlertFlow <alerts@example.com>", **config}
    return provider_class("email", "smtp")(config)


# --- SMTP -----------------------------------------------------------------------------------------


def test_smtp_sends_text_and_html_and_answers_its_message_id(smtp_server):
    sent = smtp(smtp_server).send(outgoing())

    [received] = smtp_server.messages
    assert (received.mail_from, received.rcpt_tos) == ("alerts@example.com", ["ada@example.com"])
    message = received.message
    assert message["Subject"] == "Login from a new device"
    assert message["Message-ID"] == sent.provider_message_id
    assert sent.provider_message_id.endswith("@example.com>")
    assert message[HEADER_MESSAGE_ID] == "msg-1"
    assert message.get_body(("plain",)).get_content().strip() == "Hi Ada, was it you?"
    assert "<b>you</b>" in message.get_body(("html",)).get_content()


def test_smtp_batch_reuses_one_connection(smtp_server):
    with smtp(smtp_server) as provider:
        for n in range(5):
            provider.send(outgoing(to=f"user{n}@example.com", message_id=f"m{n}"))
    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 1


def test_smtp_builds_each_message_once_and_sends_those_bytes(smtp_server, monkeypatch):
    built = []
    original = EmailMultiAlternatives.message

    def message(self):
        mime = original(self)
        built.append(mime["Message-ID"])
        return mime

    monkeypatch.setattr(EmailMultiAlternatives, "message", message)
    with smtp(smtp_server) as provider:
        sent = [provider.send(outgoing(to=f"user{n}@example.com", message_id=f"m{n}")) for n in range(3)]
    # Django's backend built the MIME a second time for sending, with the same headers.
    assert built == [s.provider_message_id for s in sent]
    assert [m.message["Message-ID"] for m in smtp_server.messages] == built


def test_smtp_without_a_batch_connects_per_message(smtp_server):
    provider = smtp(smtp_server)
    provider.send(outgoing())
    provider.send(outgoing())
    assert smtp_server.connections == 2


def test_smtp_sender_override_is_the_envelope_and_header_sender(smtp_server):
    smtp(smtp_server).send(Outgoing("m", "ada@example.com", CONTENT, sender="security@example.org"))
    [received] = smtp_server.messages
    assert received.mail_from == "security@example.org"
    assert received.message["From"] == "security@example.org"


def test_smtp_4xx_reply_is_transient(smtp_server):
    smtp_server.reply_next("451 4.3.0 Try again later")
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing())
    assert caught.value.transient
    assert caught.value.code == Code.UNAVAILABLE
    assert "451" in str(caught.value)


def test_smtp_550_recipient_rejected_is_permanent(smtp_server):
    smtp_server.refuse_recipient("gone@example.com", "550 5.1.1 No such user")
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing(to="gone@example.com"))
    assert caught.value.permanent
    assert (caught.value.code, caught.value.fault) == (Code.REJECTED, Fault.ADDRESS)
    assert not caught.value.deactivate_device


def test_smtp_revoked_login_is_the_providers_fault(smtp_server):
    smtp_server.require_login("alertflow", "current-password")
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server, username="alertflow", password="revoked-password").send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, Code.AUTH, Fault.PROVIDER)
    assert "535" in str(caught.value)


def test_smtp_login_that_works_sends(smtp_server):
    smtp_server.require_login("alertflow", "current-password")
    smtp(smtp_server, username="alertflow", password="current-password").send(outgoing())
    assert len(smtp_server.messages) == 1


def test_smtp_refused_sender_is_a_configuration_fault_of_the_provider(smtp_server):
    smtp_server.refuse_sender("alerts@example.com", "553 5.7.1 Sender address not owned by this account")
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing())
    assert (caught.value.code, caught.value.fault) == (Code.CONFIGURATION, Fault.PROVIDER)


def test_smtp_relay_denied_is_a_configuration_fault_of_the_provider(smtp_server):
    smtp_server.refuse_recipient("ada@example.com", "554 5.7.1 <ada@example.com>: Relay access denied")
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing())
    assert (caught.value.code, caught.value.fault) == (Code.CONFIGURATION, Fault.PROVIDER)


@pytest.mark.parametrize(
    ("reply", "code", "fault"),
    [
        ("554 5.7.1 Message rejected as spam", Code.BAD_REQUEST, Fault.CONTENT),
        ("552 5.3.4 Message size exceeds fixed limit", Code.BAD_REQUEST, Fault.CONTENT),
        ("550 5.1.1 Mailbox unknown", Code.REJECTED, Fault.ADDRESS),  # refused only after DATA
    ],
)
def test_smtp_refusal_after_data_says_whose_fault_it_is(smtp_server, reply, code, fault):
    smtp_server.reply_next(reply)
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, code, fault)


def test_smtp_batch_goes_on_after_a_refused_recipient_on_the_same_connection(smtp_server):
    smtp_server.refuse_recipient("gone@example.com", "550 5.1.1 No such user")
    with smtp(smtp_server) as provider:
        provider.send(outgoing(to="a@example.com"))
        with pytest.raises(ProviderError):
            provider.send(outgoing(to="gone@example.com"))
        provider.send(outgoing(to="b@example.com"))
    assert [m.rcpt_tos for m in smtp_server.messages] == [["a@example.com"], ["b@example.com"]]
    assert smtp_server.connections == 1


def test_smtp_421_closing_reply_is_transient_and_the_batch_reconnects(smtp_server):
    smtp_server.reply_next("421 4.7.0 Closing connection")
    with smtp(smtp_server) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.send(outgoing(to="a@example.com"))
        provider.send(outgoing(to="b@example.com"))
    assert caught.value.transient
    assert [m.rcpt_tos for m in smtp_server.messages] == [["b@example.com"]]
    assert smtp_server.connections == 2


def test_smtp_connection_refused_is_transient(smtp_server):
    provider = smtp(smtp_server)
    smtp_server.stop()
    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing())
    assert caught.value.transient
    assert caught.value.code == Code.UNAVAILABLE


def test_smtp_message_id_of_an_idn_sender_is_ascii_and_the_provider_message_id(smtp_server):
    sent = smtp(smtp_server, from_email="Alerts <alerts@bücher.example>").send(outgoing())

    [received] = smtp_server.messages
    assert sent.provider_message_id.endswith("@xn--bcher-kva.example>")
    assert received.message["Message-ID"] == sent.provider_message_id
    assert received.mail_from == "alerts@xn--bcher-kva.example"


def test_smtp_envelope_recipient_of_an_idn_domain_is_its_punycode(smtp_server):
    smtp(smtp_server).send(outgoing(to="ada@bücher.example"))
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ada@xn--bcher-kva.example"]


@pytest.mark.parametrize(
    ("sender", "to", "content"),
    [
        ("alerts@example.com", "ada@example.com", {"subject": "Bench", "text": "Hello."}),
        ("AlertFlow <alerts@example.com>", "ada@example.com", CONTENT),
        ("AlertFlow <alerts@example.com>", "ada@example.com", {"subject": "Hi", "html": "<p>only html</p>"}),
        # Non-ASCII names, IDN domains, a subject and a line past the folding and line limits.
        ("Ädä Ålerts <alerts@bücher.example>", "ada@bücher.example", {
            "subject": "Connexion depuis un nouvel appareil, vérifiez-la " * 4,
            "text": "é" * 1200 + "\nsecond line\n",
            "html": "<p>" + "ü" * 500 + "</p>",
        }),
        ("Ada <alerts@example.com>", "ada@example.com", {"subject": "x" * 300, "text": "From here on\n.\n"}),
    ],
)  # fmt: skip
def test_smtp_bytes_are_the_bytes_of_djangos_as_bytes(sender, to, content):
    provider = provider_class("email", "smtp")({"host": "127.0.0.1", "from_email": sender})
    out = Outgoing("msg-1", to, content, unsubscribe_url="https://example.com/unsubscribe/" + "t" * 80)
    _message, mime = provider.build_mime(out)
    for _ in range(2):  # the second time, each header's fold is the remembered one
        # The same random multipart boundary on both sides; each flatten sets it on its copy.
        random.seed(14)
        expected = copy.deepcopy(mime).as_bytes(linesep="\r\n")
        random.seed(14)
        assert smtp_bytes(copy.deepcopy(mime)) == expected


@given(
    name=st.sampled_from(["To", "Message-ID", HEADER_MESSAGE_ID, "Subject", "From", "List-Unsubscribe", "X"]),
    value=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=90)
    | st.text(alphabet=" ;,=?\"'()<>@ab", max_size=90)
    | st.text(max_size=40),
)
def test_a_header_is_folded_as_compat32_folds_it(name, value):
    """The policy's shortcut for a short printable ASCII line gives what compat32's Header
    algorithm gives, for every value (folded lines, control characters and non-ASCII included),
    or fails as it does (a line break followed by what reads as another header)."""

    def fold(policy):
        try:
            return policy.fold_binary(name, value)
        except Exception as exc:  # compared: the same failure on both sides
            return type(exc)

    assert fold(_SMTP_POLICY) == fold(Compat32(linesep="\r\n"))


def test_smtp_bytes_never_use_a_boundary_that_a_part_contains():
    provider = provider_class("email", "smtp")({"host": "127.0.0.1", "from_email": "alerts@example.com"})
    random.seed(14)
    boundary = Generator._make_boundary()  # the boundary that seed makes first
    text = f"before\n--{boundary}\nafter"
    _message, mime = provider.build_mime(Outgoing("msg-1", "ada@example.com", {**CONTENT, "text": text}))

    random.seed(14)
    data = smtp_bytes(mime)

    # The stdlib's check missed it with CRLF line ends, and its boundary would have cut the text.
    assert mime.get_boundary() == f"{boundary}.0"
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").strip() == text
    assert "<b>you</b>" in parsed.get_body(("html",)).get_content()


def sanitized(address: str) -> str:
    """What Django's SMTP backend puts in RCPT TO (the slow path), or the error it raises (the
    email package's parser raises more than ValueError on some garbage)."""
    try:
        return sanitize_address(address, "utf-8")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def fast(address: str) -> str:
    try:
        return envelope_recipient(address, "utf-8")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "Ada.Lovelace+alerts@Mail.Example.COM",
        "o'brien@example.ie",
        "x{y}|z~^`#$%&*/?-_@example.com",
        "bounces+ada=example.com@mail.example.com",  # VERP: '=' takes the full parse
        "=?utf-8?q?=C3=A9?=@example.com",  # an encoded word, which the parser decodes
        "ada@bücher.example",  # IDN domain: punycode
        "adà@example.com",  # non-ASCII local part: RFC 2047 encoded
        '"ada lovelace"@example.com',  # quoted local part
        "Ada Lovelace <ada@example.com>",  # a display name
        "Ada Lövelace <ada@example.com>",
        "ada@[192.0.2.1]",  # domain literal
        "ada@example.com.",  # trailing dot
        "ada@" + "a" * 64 + ".example",  # a label past 63: the idna codec refuses it
        "ada..b@example.com",
        "ada@example.com\nBcc: eve@example.com",
        "ada@example.com\r\nBcc: eve@example.com",
        "ada@example.com, eve@example.com",
        "ada@example.com\n",
        "ada@exa mple.com",
    ],
)
def test_envelope_recipient_is_what_django_sanitize_address_makes(address):
    assert fast(address) == sanitized(address)


ADDRESS_CHARACTERS = st.sampled_from(list("abcXYZ019.-_+=?'`{}|~^#$%&*/!@ \"<>()[],;:\\\r\ntéü€"))


@given(st.text(ADDRESS_CHARACTERS, max_size=30), st.text(ADDRESS_CHARACTERS, max_size=30))
def test_envelope_recipient_fast_path_matches_the_full_parse_for_any_address(local, domain):
    address = f"{local}@{domain}"
    assert fast(address) == sanitized(address)


def test_smtp_malformed_address_is_refused_before_connecting(smtp_server):
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing(to="not an address"))
    assert (caught.value.permanent, caught.value.code) == (True, Code.INVALID_ADDRESS)
    assert smtp_server.connections == 0


def test_smtp_address_no_header_can_carry_is_the_addresss_fault_before_connecting(smtp_server):
    # Django's validator takes it (a dotless i, U+0131, matches [A-Z] case-insensitively), but its
    # IDNA form is longer than a DNS label may be, so Django's mail code cannot write it: it raised
    # UnicodeError, which the pipeline takes for a bug (logged with its traceback, "provider_error").
    to = "ada@" + "a\u0131" * 31 + ".example.com"

    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing(to=to))

    assert (caught.value.permanent, caught.value.code) == (True, Code.INVALID_ADDRESS)
    assert smtp_server.connections == 0


def test_smtp_address_with_a_line_break_in_its_quoted_part_is_the_addresss_fault(smtp_server):
    # Django's validator takes control characters inside a quoted local part (RFC 5322 obs-qtext),
    # and a vertical tab there broke the To header's line: a parser read To as '"ada', and the
    # message was recorded as sent.
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing(to='"ada\x0bx"@example.com'))

    assert (caught.value.permanent, caught.value.code) == (True, Code.INVALID_ADDRESS)
    assert smtp_server.connections == 0


@pytest.mark.parametrize("line_break", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_smtp_subject_with_a_line_break_django_lets_through_is_refused_before_connecting(smtp_server, line_break):
    # Django refuses \n and \r in a header; Python's email package also breaks an ASCII header's
    # line at these (str.splitlines), so "Code 123" + VT + "is yours" went out as a header block
    # ending after "Code 123": From, To and the rest became the body, and the message was "sent".
    with pytest.raises(ProviderError) as caught:
        smtp(smtp_server).send(outgoing(subject=f"Code 123{line_break}is yours"))

    assert (caught.value.permanent, caught.value.code) == (True, Code.BAD_REQUEST)
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"port": 25}, "host: required"),
        ({"host": "mail.example.com", "use_tls": True, "use_ssl": True}, "use_ssl: use_tls (STARTTLS) and use_ssl"),
        ({"host": "mail.example.com", "port": 70000}, "port: must be an integer from 1 to 65535"),
        ({"host": "mail.example.com", "username": "u"}, "password: username and password go together"),
        ({"host": "mail.example.com", "timeout": 0}, "timeout: must be between 0 and 300 seconds"),
        ({"host": "mail.example.com", "from_email": "nobody"}, "from_email: not an email address"),
        # parseaddr reads the first address and stops; every send then failed on the second.
        (
            {"host": "mail.example.com", "from_email": "a@example.com, b@example.com"},
            "from_email: not an email address",
        ),
        (
            {"host": "mail.example.com", "from_email": "Alerts\x0bBcc <a@example.com>"},
            "from_email: not an email address",
        ),
    ],
)
def test_smtp_config_errors_name_the_field(config, error):
    config = {"from_email": "alerts@example.com", **config}
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        provider_class("email", "smtp").validate_config(config)


def test_smtp_config_defaults_the_port_from_the_tls_mode():
    validate = provider_class("email", "smtp").validate_config
    base = {"host": "mail.example.com", "from_email": "alerts@example.com"}
    assert validate(base)["port"] == 25
    assert validate({**base, "use_tls": True})["port"] == 587
    assert validate({**base, "use_ssl": "true"})["port"] == 465


# --- ESPs through anymail -------------------------------------------------------------------------


def esp(fake, kind, **config):
    return provider_class("email", kind)({**fake.config(kind), **config})


def test_sendgrid_sends_through_anymail_and_answers_its_message_id(sendgrid_fake):
    sent = esp(sendgrid_fake, "sendgrid").send(outgoing())

    [request] = sendgrid_fake.requests
    assert request.headers["authorization"] == "Bearer SG.test"
    body = request.json()
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com"}]
    assert body["subject"] == "Login from a new device"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    # anymail's metadata becomes SendGrid custom_args, which its webhooks echo back.
    assert body["custom_args"]["alertflow_message_id"] == "msg-1"
    assert sent.provider_message_id == body["personalizations"][0]["custom_args"]["anymail_id"]


def test_sendgrid_batch_reuses_one_http_connection(sendgrid_fake):
    with esp(sendgrid_fake, "sendgrid") as provider:
        for n in range(3):
            provider.send(outgoing(message_id=f"m{n}"))
    assert len(sendgrid_fake.requests) == 3
    assert sendgrid_fake.connections == 1


def test_esp_429_is_transient_and_keeps_retry_after(sendgrid_fake):
    sendgrid_fake.fail_next(429, headers={"Retry-After": "30"})
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "sendgrid").send(outgoing())
    assert (caught.value.transient, caught.value.code, caught.value.retry_after) == (True, Code.RATE_LIMITED, 30.0)


def test_esp_5xx_is_transient(sendgrid_fake):
    sendgrid_fake.fail_next(503)
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "sendgrid").send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


def test_esp_other_4xx_is_permanent(sendgrid_fake):
    sendgrid_fake.fail_next(400, {"errors": [{"message": "Does not contain a valid address.", "field": "to"}]})
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "sendgrid").send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, Code.BAD_REQUEST, Fault.CONTENT)
    assert "valid address" in str(caught.value)


def test_esp_bad_api_key_is_a_permanent_auth_error(sendgrid_fake):
    sendgrid_fake.fail_next(401, {"errors": [{"message": "The provided authorization grant is invalid"}]})
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "sendgrid").send(outgoing())
    assert (caught.value.permanent, caught.value.code, caught.value.fault) == (True, Code.AUTH, Fault.PROVIDER)


@pytest.mark.parametrize(("status", "code"), [(402, Code.ACCOUNT), (403, Code.AUTH), (404, Code.CONFIGURATION)])
def test_esp_account_and_configuration_refusals_are_the_providers_fault(sendgrid_fake, status, code):
    sendgrid_fake.fail_next(status)
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "sendgrid").send(outgoing())
    assert (caught.value.code, caught.value.fault) == (code, Fault.PROVIDER)


def test_esp_unreachable_is_transient(sendgrid_fake):
    provider = esp(sendgrid_fake, "sendgrid")
    sendgrid_fake.stop()
    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.UNAVAILABLE)


def test_mailgun_sends_to_its_domain_and_answers_mailguns_id(sendgrid_fake):
    sent = esp(sendgrid_fake, "mailgun").send(outgoing())
    [request] = sendgrid_fake.requests
    assert request.path == "/v3/mg.example.com/messages"
    assert sent.provider_message_id.endswith("@mg.example.com>")


def test_postmark_sends_with_its_server_token(sendgrid_fake):
    sent = esp(sendgrid_fake, "postmark").send(outgoing())
    [request] = sendgrid_fake.requests
    assert request.headers["x-postmark-server-token"] == "pm-token"
    assert request.json()["To"] == "ada@example.com"
    assert len(sent.provider_message_id) == 36


def test_amazon_ses_sends_through_boto3_to_the_configured_endpoint(sendgrid_fake):
    sent = esp(sendgrid_fake, "amazon_ses").send(outgoing())
    [request] = sendgrid_fake.requests
    assert request.path == "/v2/email/outbound-emails"
    assert "Credential=AKIDTEST/" in request.headers["authorization"]
    assert sent.provider_message_id.startswith("0100")


def test_amazon_ses_throttling_is_transient_without_botocore_retrying(sendgrid_fake):
    sendgrid_fake.fail_next(429, {"__type": "TooManyRequestsException", "message": "Maximum sending rate exceeded."})
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "amazon_ses").send(outgoing())
    assert (caught.value.transient, caught.value.code) == (True, Code.RATE_LIMITED)
    assert len(sendgrid_fake.requests) == 1


def test_amazon_ses_rejected_message_is_permanent(sendgrid_fake):
    sendgrid_fake.fail_next(400, {"__type": "MessageRejected", "message": "Email address is not verified."})
    with pytest.raises(ProviderError) as caught:
        esp(sendgrid_fake, "amazon_ses").send(outgoing())
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("kind", "config", "error"),
    [
        ("sendgrid", {}, "api_key: required"),
        ("sendgrid", {"api_key": "k", "api_url": "ftp://x"}, "api_url: must be an http(s) URL"),
        ("mailgun", {"api_key": "k", "sender_domain": 3}, "sender_domain: must be a string"),
        ("postmark", {"api_key": "k"}, "api_key: unknown setting"),
        ("amazon_ses", {"access_key_id": "a", "secret_access_key": "s"}, "region: required"),
    ],
)
def test_esp_config_errors_name_the_field(kind, config, error):
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        provider_class("email", kind).validate_config({"from_email": "alerts@example.com", **config})


# --- Console sink ---------------------------------------------------------------------------------


def test_console_email_writes_an_eml_file_a_person_can_open(var_dir):
    import email
    import email.policy

    sent = provider_class("email", "console")({}).send(outgoing(message_id="0193-abc"))

    [path] = (var_dir / "sinks" / "email").iterdir()
    assert path.name == sent.provider_message_id
    assert path.name.endswith("-0193-abc.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Login from a new device"
    assert "<b>you</b>" in message.get_body(("html",)).get_content()
