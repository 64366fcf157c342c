"""What reaches the user when a setting is wrong or the store refuses: one clear line,
never a traceback, never SQL parameters (addresses, names)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import NOW, Cli, make_cli
from store_support import postgres_database

from relance.errors import SettingsError
from relance.settings import Settings, check_service_secrets, load_settings

COMMANDS = [
    ["validate"],
    ["status", "ana@client.example"],
    ["suppress", "list"],
    ["tasks"],
    ["report"],
    ["dispatch", "--now", NOW],
    ["serve"],
    ["db", "upgrade"],
    ["enroll", "outreach", "--email", "ana@client.example", "--now", NOW],
]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return make_cli(tmp_path, monkeypatch)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a[:2]) for a in COMMANDS])
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("RELANCE_MAX_BODY_BYTES", "abc")
    result = cli.run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: RELANCE_MAX_BODY_BYTES: expected a valid integer, unable to parse string "
        "as an integer, got 'abc'\n"
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("RELANCE_BATCH_SIZE", "0", "RELANCE_BATCH_SIZE: expected a number greater than or "
         "equal to 1, got '0'"),
        ("RELANCE_FREE_MAIL_DOMAINS", "gmail.com", 'RELANCE_FREE_MAIL_DOMAINS: expected a '
         'JSON value (e.g. ["a", "b"]), got text'),
        ("RELANCE_SENDGRID_SANDBOX", "maybe", "RELANCE_SENDGRID_SANDBOX: expected a valid "
         "boolean, unable to interpret input, got 'maybe'"),
    ],
)  # fmt: skip
def test_other_bad_settings_are_named(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    result = cli.run("suppress", "list")
    assert (result.exit_code, result.stderr) == (2, f"error: {says}\n")


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RELANCE_SDR_TOKEN": "a"}, "RELANCE_SDR_TOKEN"),
        ({"RELANCE_INBOUND_SECRET": "b"}, "RELANCE_INBOUND_SECRET"),
        (
            {"RELANCE_SDR_TOKEN": "a" * 15, "RELANCE_CALCOM_SECRET": "c"},
            "RELANCE_SDR_TOKEN, RELANCE_CALCOM_SECRET",
        ),
    ],
)
def test_serve_refuses_a_short_secret(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = cli.run("serve", "--port", "1")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {named}: expected a secret of at least 16 characters (e.g. python3 -c "
        "'import secrets; print(secrets.token_urlsafe(24))'), got a shorter one: "
        "refusing to serve\n"
    )
    for value in variables.values():
        assert f"'{value}'" not in result.stderr


def test_the_secret_check_is_reusable_and_accepts_long_secrets() -> None:
    check_service_secrets(Settings(sdr_token="s" * 16, inbound_secret="i" * 40))
    check_service_secrets(Settings())  # no secret: the endpoints refuse everything
    with pytest.raises(SettingsError, match="RELANCE_CALENDLY_SIGNING_KEY"):
        check_service_secrets(Settings(calendly_signing_key="short"))


def test_load_settings_names_a_hidden_secret_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELANCE_SENDGRID_ASM_GROUP_ID", "x1")
    with pytest.raises(SettingsError) as caught:
        load_settings(sdr_token=["not", "text"])
    assert str(caught.value).splitlines() == [
        "RELANCE_SENDGRID_ASM_GROUP_ID: expected a valid integer, unable to parse string as "
        "an integer, got 'x1'",
        "RELANCE_SDR_TOKEN: expected a valid string",
    ]


@pytest.mark.postgres
def test_a_store_error_on_postgresql_is_one_line_without_parameters(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "people.csv"
    company = "Very Long Company " * 30  # more than the column holds
    path.write_text(
        "email,first_name,company,industry\n"
        "ana@client.example,Ana,Acme,x\n"
        f"secret.person@client.example,Secretname,{company},x\n",
        encoding="utf-8",
    )
    with postgres_database("relance_edge") as url:
        monkeypatch.setenv("RELANCE_DATABASE_URL", url)
        result = cli.run("enroll", "outreach", "--csv", str(path), "--now", NOW)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        "error: the store refused the operation (StringDataRightTruncation"
    )
    for private in ("secret.person", "Secretname", "parameters", "INSERT"):
        assert private not in result.output


def test_up_refuses_a_short_secret_before_starting_anything(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELANCE_SDR_TOKEN", "a")
    result = cli.run("up", "--port", "1", "--prefect-port", "2")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: RELANCE_SDR_TOKEN: expected a secret of at least 16")


def test_up_says_which_port_is_taken(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli.run("up", "--prefect-port", str(port))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "--prefect-port" in result.stderr
    assert "Stopped." in result.stdout


def test_up_worker_only_needs_the_stack_s_prefect_api(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = cli.run("up", "--worker-only")
    assert result.exit_code == 1
    assert "--worker-only adds a worker to a running stack: set PREFECT_API_URL" in result.stderr
