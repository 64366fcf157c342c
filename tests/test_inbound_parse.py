"""SendGrid Inbound Parse, pure: reading the posted form, telling replies from auto-replies
and bounces, finding the return date of an out-of-office, cutting the quoted history."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.inbound_parse import (
    Ignore,
    InboundEmail,
    OutOfOffice,
    Reply,
    classify,
    html_to_text,
    parse_headers,
    parse_inbound,
    return_date,
    strip_quoted,
)
from relance.errors import InputError

FRIDAY_19_DEC_2025 = datetime(2025, 12, 19, 10, 0, tzinfo=UTC)
MONDAY_21_DEC_2026 = datetime(2026, 12, 21, 10, 0, tzinfo=UTC)

HEADERS = (
    "Received: from mail.acme.example (mail.acme.example [203.0.113.7])\r\n"
    "\tby mx.sendgrid.net with ESMTP id abc; Fri, 19 Dec 2025 10:00:00 +0000\r\n"
    "Message-ID: <CAF=reply-1@mail.acme.example>\r\n"
    "In-Reply-To: <tp-12@relance.local>\r\n"
    "References: <tp-7@relance.local>\r\n"
    " <tp-12@relance.local>\r\n"
    "From: =?UTF-8?Q?Ad=C3=A8le_Martin?= <Adele.Martin@Acme.Example>\r\n"
    "To: reply+0123456789abcdef01234567@reply.relance.local\r\n"
    "Subject: =?UTF-8?Q?Re=3A_Le_benchmark_des_d=C3=A9lais?=\r\n"
    "Date: Fri, 19 Dec 2025 11:00:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b1"\r\n'
)


def form(**overrides: str) -> dict[str, str]:
    """The text fields SendGrid posts for one message ("send raw" off)."""
    fields = {
        "headers": HEADERS,
        "dkim": "{@acme.example : pass}",
        "SPF": "pass",
        "envelope": json.dumps(
            {
                "to": ["reply+0123456789abcdef01234567@reply.relance.local"],
                "from": "adele.martin@acme.example",
            }
        ),
        "from": "Adèle Martin <Adele.Martin@Acme.Example>",
        "to": "reply+0123456789abcdef01234567@reply.relance.local",
        "cc": "Paul <paul@acme.example>, ADELE.martin@acme.example",
        "subject": "Re: Le benchmark des délais",
        "text": "Merci, c'est intéressant.\n",
        "html": "<p>Merci, c'est intéressant.</p>",
        "charsets": json.dumps(
            {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "UTF-8", "html": "UTF-8"}
        ),
        "attachments": "0",
    }
    fields.update(overrides)
    return fields


def message(
    subject: str = "Re: Le benchmark", text: str = "Merci !", **headers: str
) -> InboundEmail:
    return InboundEmail(
        sender="adele.martin@acme.example",
        recipients=("reply+0123456789abcdef01234567@reply.relance.local",),
        subject=subject,
        text=text,
        headers={name.lower().replace("_", "-"): value for name, value in headers.items()},
    )


# Reading the form ----------------------------------------------------------------------------


def test_the_form_becomes_an_inbound_email() -> None:
    email = parse_inbound(form())
    assert email.sender == "adele.martin@acme.example"
    assert email.recipients == (
        "reply+0123456789abcdef01234567@reply.relance.local",
        "paul@acme.example",
        "adele.martin@acme.example",
    )
    assert email.subject == "Re: Le benchmark des délais"
    assert email.text == "Merci, c'est intéressant.\n"
    assert email.message_id == "<CAF=reply-1@mail.acme.example>"
    assert email.in_reply_to == "<tp-12@relance.local>"
    assert email.references == "<tp-7@relance.local> <tp-12@relance.local>"
    assert email.header("From") == "Adèle Martin <Adele.Martin@Acme.Example>"
    assert email.envelope_sender == "adele.martin@acme.example"
    assert (email.spf, email.dkim, email.attachments) == ("pass", "{@acme.example : pass}", 0)


def test_fields_are_decoded_with_their_declared_charset() -> None:
    # Starlette decodes bytes that are not UTF-8 as Latin-1: the parser decodes them again.
    text = "Prix : 12 € — à voir."
    subject = "Réponse"
    fields = form(
        text=text.encode("cp1252").decode("latin-1"),
        subject=subject.encode("iso-8859-1").decode("latin-1"),
        charsets=json.dumps({"text": "windows-1252", "subject": "iso-8859-1"}),
    )
    email = parse_inbound(fields)
    assert (email.text, email.subject) == (text, subject)


def test_a_field_already_read_as_utf8_is_kept_whatever_the_charset_says() -> None:
    email = parse_inbound(form(text="Ça coûte 12 €", charsets=json.dumps({"text": "iso-8859-1"})))
    assert email.text == "Ça coûte 12 €"


def test_bytes_fields_are_decoded_and_unknown_charsets_fall_back() -> None:
    fields: dict[str, str | bytes] = {
        **form(charsets=json.dumps({"text": "iso-8859-15", "html": "no-such-charset"})),
        "text": "Été".encode("iso-8859-15"),
        "html": b"<p>caf\xe9</p>",
    }
    email = parse_inbound(fields)
    assert email.text == "Été"
    assert email.html == "<p>caf\ufffd</p>"


def test_missing_fields_fall_back_on_the_header_block() -> None:
    email = parse_inbound({"headers": HEADERS})
    assert email.sender == "adele.martin@acme.example"
    assert email.subject == "Re: Le benchmark des délais"
    assert email.recipients == ("reply+0123456789abcdef01234567@reply.relance.local",)


def test_junk_json_is_ignored_but_an_empty_form_is_refused() -> None:
    email = parse_inbound(form(envelope="{not json", charsets="[1, 2]"))
    assert email.sender == "adele.martin@acme.example"
    with pytest.raises(InputError, match="not an Inbound Parse post"):
        parse_inbound({"text": "hello", "envelope": "{}"})


def test_header_block_keeps_the_first_value_and_decodes_words() -> None:
    headers = parse_headers(
        "Received: one\nReceived: two\nSubject: =?iso-8859-1?q?R=E9ponse?=\n"
        "X-Bad: =?no-such?q?abc?=\n"
    )
    assert headers["received"] == "one"
    assert headers["subject"] == "Réponse"
    assert headers["x-bad"] == "=?no-such?q?abc?="


# The quoted history -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribution",
    [
        "Le lun. 2 mars 2026 à 10:00, Relance <relance@example.com> a écrit :",
        "Le lun. 2 mars 2026 à 10:00, Relance <\nrelance@example.com> a écrit :",
        "On Mon, Mar 2, 2026 at 10:00 AM Relance <relance@example.com> wrote:",
        "Am 02.03.2026 um 10:00 schrieb Relance <relance@example.com>:",
        "El lun, 2 mar 2026 a las 10:00, Relance (<relance@example.com>) escribió:",
        "-----Original Message-----",
        "-----Message d'origine-----",
        "________________________________",
        "De : Relance <relance@example.com>\nEnvoyé : lundi 2 mars 2026 10:00",
        "From: Relance <relance@example.com>\nSent: Monday, March 2, 2026 10:00 AM",
    ],
)
def test_quoted_history_is_cut(attribution: str) -> None:
    text = f"Oui, appelez-moi jeudi.\n\n{attribution}\n> Bonjour Adèle,\n> Le benchmark...\n"
    assert strip_quoted(text) == "Oui, appelez-moi jeudi."


def test_quoted_lines_go_but_interleaved_answers_stay() -> None:
    text = "> Avez-vous 15 minutes ?\nOui, jeudi.\n> Et le budget ?\nPrévu en mars.\r\n"
    assert strip_quoted(text) == "Oui, jeudi.\nPrévu en mars."


def test_html_only_replies_are_read_as_text() -> None:
    markup = "<html><head><style>p{}</style></head><body><p>Oui&nbsp;!</p><div>Jeudi</div>"
    assert html_to_text(markup).split() == ["Oui", "!", "Jeudi"]
    email = InboundEmail(sender="a@acme.example", html=markup)
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == Reply("Oui !\nJeudi")


# Classifying --------------------------------------------------------------------------------


def test_a_person_answering_is_a_reply_without_the_history() -> None:
    email = message(text="Volontiers.\n\nOn Mon, Mar 2, 2026 at 10:00 Relance wrote:\n> Hello")
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == Reply("Volontiers.")


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
        {"Auto-Submitted": "auto-replied; owner-email=adele@acme.example"},
        {"X-Autoreply": "yes"},
        {"X-Autorespond": "Out of office"},
        {"Precedence": "auto_reply"},
        {"Precedence": "bulk", "Auto-Submitted": "auto-replied"},
    ],
)
def test_auto_reply_headers_mean_out_of_office(headers: dict[str, str]) -> None:
    email = message(**headers)
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == OutOfOffice(None)


def test_auto_submitted_no_is_a_person() -> None:
    email = message(Auto_Submitted="no")
    assert isinstance(classify(email, received_at=FRIDAY_19_DEC_2025), Reply)


@pytest.mark.parametrize(
    "subject",
    [
        "Absence du bureau : Le benchmark",
        "Absent du bureau",
        "Réponse automatique : Re: Le benchmark",
        "Reponse automatique",
        "Message automatique",
        "Out of Office: The benchmark",
        "OOO until Jan 5",
        "Automatic reply: The benchmark",
        "Autoreply: The benchmark",
        "Auto-Reply",
        "Auto Response",
        "Abwesenheitsnotiz: Der Benchmark",
        "Automatische Antwort: Der Benchmark",
        "Abwesend bis 5. Januar",
        "Fuera de la oficina: El benchmark",
        "Respuesta automática: El benchmark",
        "Ausente hasta el 5 de enero",
    ],
)
def test_auto_reply_subjects_mean_out_of_office(subject: str) -> None:
    assert isinstance(classify(message(subject), received_at=FRIDAY_19_DEC_2025), OutOfOffice)


@pytest.mark.parametrize(
    "subject", ["Re: Le benchmark des délais", "RE: benchmark", "Re: Officina", "AW: Termin"]
)
def test_ordinary_subjects_are_replies(subject: str) -> None:
    assert isinstance(classify(message(subject), received_at=FRIDAY_19_DEC_2025), Reply)


@pytest.mark.parametrize(
    ("sender", "subject", "headers"),
    [
        ("mailer-daemon@mx.acme.example", "Hello", {}),
        ("postmaster@acme.example", "Hello", {}),
        ("adele@acme.example", "Undelivered Mail Returned to Sender", {}),
        ("adele@acme.example", "Delivery Status Notification (Failure)", {}),
        ("adele@acme.example", "Non remis : Le benchmark", {}),
        ("adele@acme.example", "Unzustellbar: Der Benchmark", {}),
        (
            "adele@acme.example",
            "Hello",
            {"content-type": 'multipart/report; report-type="delivery-status"; boundary="x"'},
        ),
        (
            "adele@acme.example",
            "Hello",
            {
                "auto-submitted": "auto-replied",
                "content-type": "multipart/report; report-type=delivery-status",
            },
        ),
    ],
)
def test_bounces_are_ignored(sender: str, subject: str, headers: dict[str, str]) -> None:
    email = InboundEmail(sender=sender, subject=subject, text="failed", headers=headers)
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == Ignore("delivery report")


@pytest.mark.parametrize("precedence", ["bulk", "junk", "list", "Bulk"])
def test_bulk_mail_is_ignored(precedence: str) -> None:
    email = message(Precedence=precedence)
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == Ignore(
        f"bulk mail (Precedence: {precedence.lower()})"
    )


# Return dates -------------------------------------------------------------------------------

FR_OUTLOOK = """Bonjour,

Je suis absente du bureau jusqu'au vendredi 2 janvier inclus, avec un accès limité à mes
e-mails. Je serai de retour le lundi 5 janvier.
En cas d'urgence, merci de contacter Paul Martin (paul.martin@acme.example).

Cordialement,
Adèle Martin"""

EN_GMAIL = """Hello,

Thank you for your message. I am currently out of the office with no access to email and
will be back on January 5th.
For anything urgent, please contact support@acme.example.

Best regards,
John Smith"""

DE_EXCHANGE = """Sehr geehrte Damen und Herren,

vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 2. Januar nicht im Büro.
Ab dem 5. Januar bin ich wieder für Sie erreichbar. Ihre E-Mail wird nicht weitergeleitet.

Mit freundlichen Grüßen
Anna Schmidt"""

ES_OUTLOOK = """Hola,

Gracias por su correo. Estoy fuera de la oficina hasta el 2 de enero sin acceso al correo
electrónico. Estaré de vuelta el 5 de enero.

Un saludo,
Lucía García"""


@pytest.mark.parametrize(
    ("text", "received_at", "back"),
    [
        (FR_OUTLOOK, FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        (EN_GMAIL, FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        (DE_EXCHANGE, FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        (ES_OUTLOOK, FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("De retour le lundi 5 janvier.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Je suis en congés. Retour prévu le 05/01/2027.", MONDAY_21_DEC_2026, date(2027, 1, 5)),
        ("I will be back on January 5th.", MONDAY_21_DEC_2026, date(2027, 1, 5)),
        ("Ich bin am 5. Januar zurück.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Ich bin zurück am 5. Januar.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Estaré de regreso el 5 de enero.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        # "until" names the last day away: back the day after
        ("Je suis absente jusqu'au 4 janvier.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Je suis absent du 19 décembre au 4 janvier.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("I'm on leave until 4 January 2026.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Out of the office from Dec 19 to Jan 4.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Ich bin bis 4. Januar im Urlaub.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        ("Estoy de vacaciones hasta el 4 de enero.", FRIDAY_19_DEC_2025, date(2026, 1, 5)),
        # relative to the arrival, never to a clock
        ("I'll be back tomorrow.", FRIDAY_19_DEC_2025, date(2025, 12, 20)),
        ("Back on Monday.", FRIDAY_19_DEC_2025, date(2025, 12, 22)),
        ("Back in 2 weeks.", FRIDAY_19_DEC_2025, date(2026, 1, 2)),
        # an English numeric date is read both ways: the nearer future one wins
        ("Back on 01/05/2027.", MONDAY_21_DEC_2026, date(2027, 1, 5)),
        ("Back on 13/01/2027.", MONDAY_21_DEC_2026, date(2027, 1, 13)),
        # French numeric dates are day first
        ("De retour le 01/05/2027.", MONDAY_21_DEC_2026, date(2027, 5, 1)),
    ],
)
def test_return_date(text: str, received_at: datetime, back: date) -> None:
    assert return_date(text, received_at) == back


@pytest.mark.parametrize(
    "text",
    [
        "Je suis absent. Je vous répondrai dès que possible.",
        "I will get back to you as soon as possible.",
        "Je suis absent pour deux semaines.",
        "De retour le 5 janvier 2024.",  # in the past: not believed
        "Back on 5 January 2029.",  # years away: not believed
        "",
    ],
)
def test_no_believable_return_date(text: str) -> None:
    assert return_date(text, FRIDAY_19_DEC_2025) is None


def test_out_of_office_reads_the_date_from_the_text_not_the_quoted_history() -> None:
    quoted = "Je suis absente.\n\nLe 18 déc. 2025, Relance a écrit :\n> De retour le 12 janvier"
    assert classify(
        message("Réponse automatique", quoted), received_at=FRIDAY_19_DEC_2025
    ) == OutOfOffice(None)
    assert classify(
        message("Réponse automatique", FR_OUTLOOK), received_at=FRIDAY_19_DEC_2025
    ) == OutOfOffice(date(2026, 1, 5))


def test_the_subject_can_carry_the_date() -> None:
    email = message("Out of office until January 4th", "Thanks.")
    assert classify(email, received_at=FRIDAY_19_DEC_2025) == OutOfOffice(date(2026, 1, 5))


# Never a crash ------------------------------------------------------------------------------

FIELD_NAMES = ["headers", "envelope", "from", "to", "cc", "subject", "text", "html", "charsets"]
texts = st.text(st.characters(codec="utf-8"), max_size=300)


@given(
    st.dictionaries(st.sampled_from([*FIELD_NAMES, "SPF", "dkim", "attachments"]), texts),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
)
def test_any_form_parses_or_is_refused_and_classifies(
    fields: dict[str, str], received_at: datetime
) -> None:
    try:
        email = parse_inbound(fields)
    except InputError:
        return
    kind = classify(email, received_at=received_at)
    if isinstance(kind, OutOfOffice) and kind.until is not None:
        assert received_at.date() <= kind.until <= received_at.date() + timedelta(days=367)


@given(
    st.lists(
        st.sampled_from(
            [
                "de retour le",
                "until",
                "bis",
                "hasta",
                " 5 ",
                "janvier",
                "01/05/2027",
                "\n",
                "Monday",
                ">",
                "a écrit :",
            ]
        ),
        max_size=20,
    )
)
def test_return_dates_are_never_before_the_arrival(words: list[str]) -> None:
    found = return_date(" ".join(words), FRIDAY_19_DEC_2025)
    assert found is None or date(2025, 12, 19) <= found <= date(2026, 12, 21)


@pytest.mark.parametrize(("given", "counted"), [("2", 2), ("³", 0), ("-1", 0), ("", 0)])
def test_the_attachment_count_is_read_safely(given: str, counted: int) -> None:
    assert parse_inbound(form(attachments=given)).attachments == counted
    assert parse_inbound(form(attachments=given), attachments=1).attachments == max(1, counted)
