"""Reading a CRM export (CSV) into prospects, every row checked before anything is written.

A file is read whole, then checked whole: ``read_contacts`` returns the valid prospects
and one ``RowError`` per problem, each naming the line as in the file (the header is
line 1) and the column, so that an import either fails with the full list or, when the
caller accepts it, enrolls the valid rows only. File-level problems (no header, no email
column, a column the templates need and the file lacks) raise ``ProspectError``.

What a file may look like:

- UTF-8, with or without a byte-order mark; ``,``, ``;`` or tab between cells (detected
  from the header line); cells quoted with ``"`` when they contain the separator.
- A header line. Columns are matched case- and accent-insensitively, ignoring spaces and
  punctuation, and these aliases are understood (``COLUMN_ALIASES``):

  ========== ==============================================================
  email      E-mail, Email Address, Courriel, Mail, Adresse e-mail, Work Email
  first_name First Name, Firstname, Given Name, Prénom
  last_name  Last Name, Lastname, Surname, Family Name, Nom, Nom de famille
  company    Company, Company Name, Account Name, Organization, Société, Entreprise
  title      Title, Job Title, Position, Poste, Fonction
  phone      Phone, Phone Number, Telephone, Téléphone, Tel
  deal_value Deal value, Deal amount, Amount, Montant, Valeur
  cycle_days Cycle days, Sales cycle days, Cycle length, Cycle
  timezone   Time zone, Timezone, TZ, Fuseau horaire
  country    Country, Country code, Pays (or "DE-BY": country and region)
  region     Region, State, State/Region, Province, Bundesland, Canton, Département
  locale     Locale, Language, Lang, Langue
  owner      Owner, Contact owner, Account owner, SDR, Propriétaire
  need       Need, Besoin
  budget     Budget
  authority  Authority, Decision maker, Décideur, Autorité
  timing     Timing, Délai, Horizon
  fit        Fit, Adéquation
  stage      Stage, Lifecycle stage, Étape, Étape du cycle
  warmth     Warmth, Chaleur, Température
  ========== ==============================================================

- Any other column becomes a template field under its snake_cased name ("Secteur
  d'activité" -> ``prospect.secteur_d_activite``).
- Numbers may use a decimal comma and grouped digits: "25 000,50", "25.000,50", "25,000".
- The qualification grid (need, budget, authority, timing, fit) is a score from 0 to 3, an
  empty cell meaning "not assessed"; stage is a lifecycle stage (suspect, lead, prospect,
  MQL, SQL, meeting, client) and warmth is cold, warm or hot (froid, tiède, chaud), an
  empty cell meaning "derived from the grid" (see relance.qualification).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from relance.errors import ProspectError
from relance.prospect import Prospect, prospect_from_row

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "e_mail",
        "email_address",
        "e_mail_address",
        "courriel",
        "mail",
        "adresse_email",
        "adresse_e_mail",
        "adresse_mail",
        "work_email",
    ),
    "first_name": ("firstname", "given_name", "prenom"),
    "last_name": ("lastname", "surname", "family_name", "nom", "nom_de_famille"),
    "company": (
        "company_name",
        "account_name",
        "organization",
        "organisation",
        "societe",
        "entreprise",
    ),
    "title": ("job_title", "position", "poste", "fonction"),
    "phone": ("phone_number", "telephone", "tel"),
    "deal_value": ("deal_amount", "amount", "montant", "valeur"),
    "cycle_days": ("sales_cycle_days", "cycle_length", "cycle"),
    "timezone": ("time_zone", "tz", "fuseau_horaire"),
    "country": ("country_code", "pays"),
    "region": (
        "state",
        "state_region",
        "state_province",
        "province",
        "bundesland",
        "canton",
        "kanton",
        "departement",
        "department",
        "region_code",
        "subdivision",
    ),
    "locale": ("language", "lang", "langue"),
    "owner": ("contact_owner", "account_owner", "sdr", "proprietaire"),
    "need": ("besoin",),
    "authority": ("decision_maker", "decideur", "autorite"),
    "timing": ("delai", "horizon"),
    "fit": ("adequation",),
    "stage": ("lifecycle_stage", "etape", "etape_du_cycle"),
    "warmth": ("chaleur", "temperature"),
}
"""Standard field -> the other header names (snake_cased) that mean it."""

_ALIASES = {
    alias: standard for standard, aliases in COLUMN_ALIASES.items() for alias in aliases
} | {standard: standard for standard in COLUMN_ALIASES}

PRESETS: dict[str, dict[str, str]] = {
    "HubSpot": {
        "record_id": "",
        "contact_id": "",
        "phone_number": "phone",
        "mobile_phone_number": "",
        "company_name": "company",
        "job_title": "title",
        "country_region": "country",
        "state_region": "",
        "preferred_language": "locale",
        "time_zone": "timezone",
        "contact_owner": "owner",
        "lifecycle_stage": "stage",
        "lead_status": "",
    },
    "Pipedrive": {
        "person_name": "",
        "person_first_name": "first_name",
        "person_last_name": "last_name",
        "person_email_work": "email",
        "person_email": "email",
        "person_phone_work": "phone",
        "person_phone": "phone",
        "person_job_title": "title",
        "person_owner": "owner",
        "person_organization": "",
        "organization_name": "company",
        "organization_address_country": "country",
        "person_label": "",
        "deal_value": "deal_value",
    },
    "Salesforce": {
        "account_name": "company",
        "company_account": "company",
        "mailing_country": "country",
        "mailingcountry": "country",
        "contact_owner": "owner",
        "lead_owner": "owner",
        "contact_id": "",
        "lead_id": "",
        "firstname": "first_name",
        "lastname": "last_name",
        "ownerid": "",
    },
    "lemlist": {
        "firstname": "first_name",
        "lastname": "last_name",
        "companyname": "company",
        "jobtitle": "title",
        "companydomain": "",
        "linkedinurl": "",
        "icebreaker": "",
        "picture": "",
        "timezone": "timezone",
    },
}
"""CRM export headers (snake_cased) -> the field they give; "" keeps the column as a
template field under its own name. Recognised from the header line (``detect_preset``)."""

SIGNATURES: dict[str, tuple[str, ...]] = {
    "HubSpot": ("record_id", "country_region", "contact_owner", "lifecycle_stage", "lead_status"),
    "Pipedrive": ("person_email_work", "person_email", "organization_name", "person_name"),
    "Salesforce": ("account_name", "mailing_country", "lead_owner", "company_account", "lead_id"),
    "lemlist": ("companyname", "linkedinurl", "icebreaker", "companydomain"),
}
"""Headers that only that CRM's exports carry: two of them name the preset."""

LINES_KEPT = 100_000
"""Rows whose line a duplicate further down names (beyond: "earlier in the file")."""

DELIMITERS = (",", ";", "\t")
PROGRESS_EVERY = 100
MAP_IGNORE = (None, "", "-")
"""What a --map file gives a header to leave the column out."""


@dataclass(frozen=True)
class RowError:
    """One problem in one row (``line`` as in the file) and, when known, one column."""

    line: int
    column: str | None
    message: str

    def format(self, file_name: str) -> str:
        where = f"{file_name}:{self.line}"
        return (
            f"{where} column {self.column}: {self.message}"
            if self.column
            else f"{where} {self.message}"
        )


@dataclass(frozen=True)
class ContactRow:
    """A valid row: the prospect it describes and the line it came from."""

    line: int
    prospect: Prospect


@dataclass(frozen=True)
class Column:
    """One header cell: what the file calls it, the field it gives (None: left out) and why."""

    header: str
    field: str | None
    source: str
    """"standard", "alias", the preset's name, "--map" or "template field"."""


@dataclass
class Contacts:
    """A checked file: its valid rows and the problems of the others."""

    file_name: str
    columns: list[str]
    """The columns' names once matched (standard names or snake_cased)."""
    rows: list[ContactRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0
    """Data rows in the file (blank lines not counted)."""
    mapping: list[Column] = field(default_factory=list)
    preset: str | None = None

    @property
    def invalid_lines(self) -> list[int]:
        return sorted({error.line for error in self.errors})

    @property
    def prospects(self) -> list[Prospect]:
        return [row.prospect for row in self.rows]


def snake_case(header: str) -> str:
    """ "Secteur d'activité" -> "secteur_d_activite"; "E-mail" -> "e_mail"."""
    plain = unicodedata.normalize("NFKD", header.strip()).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", plain.lower()).strip("_")


def column_name(header: str) -> str:
    """The field a header names: a standard field (aliases understood) or its snake_case."""
    key = snake_case(header)
    return _ALIASES.get(key, key)


def detect_preset(header: list[str]) -> str | None:
    """The CRM whose export this header line is, by the headers only it writes."""
    keys = {snake_case(cell) for cell in header}
    scores = {name: len(keys.intersection(marks)) for name, marks in SIGNATURES.items()}
    best = max(scores, key=lambda name: scores[name])
    return best if scores[best] >= 2 else None


def map_columns(
    header: list[str], mapping: Mapping[str, str | None] | None = None
) -> tuple[list[Column], str | None]:
    """What each header cell gives: ``mapping`` (a --map file: header -> field, None to
    leave out) first, then the preset recognised from the headers, then the aliases."""
    given = {snake_case(key): value for key, value in (mapping or {}).items()}
    preset = detect_preset(header)
    table = PRESETS.get(preset or "", {})
    columns: list[Column] = []
    for cell in header:
        key = snake_case(cell)
        if key in given:
            target = given[key]
            columns.append(Column(cell, None if target in MAP_IGNORE else target, "--map"))
        elif table.get(key):
            columns.append(Column(cell, table[key], str(preset)))
        elif key in _ALIASES and not (preset and key in table):
            name = _ALIASES[key]
            columns.append(Column(cell, name, "standard" if name == key else "alias"))
        else:
            columns.append(Column(cell, key or None, "template field"))
    return columns, preset


def check_mapping(data: object, source: str) -> dict[str, str | None]:
    """A --map file's content (already parsed) as header -> field; ProspectError if wrong."""
    if not isinstance(data, dict) or not data:
        raise ProspectError(
            f"{source}: expected a mapping of CSV headers to fields, such as "
            f'"Person - Email - Work: email", got {type(data).__name__}'
        )
    problems: list[str] = []
    checked: dict[str, str | None] = {}
    for header, target in data.items():
        if not isinstance(header, str) or not (target is None or isinstance(target, str)):
            problems.append(
                f"{source}: {header!r}: expected a header and a field name, got {target!r}"
            )
        elif target in MAP_IGNORE:
            checked[header] = None
        elif not re.fullmatch(r"[a-z][a-z0-9_]*", target):
            problems.append(
                f"{source}: {header!r}: expected a field name such as email, company or "
                f"trade_show (lower case, digits, _), or - to leave the column out, got {target!r}"
            )
        else:
            checked[header] = target
    if problems:
        raise ProspectError("\n".join(problems))
    return checked


def read_text(path: Path) -> str:
    """A CSV file's text (UTF-8, byte-order mark dropped); ProspectError if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProspectError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ProspectError(
            f"{path.name}:{line}: expected UTF-8 text, got byte 0x{data[error.start]:02x} "
            "(save the file as 'CSV UTF-8' from your spreadsheet or CRM)"
        ) from None


def file_lines(path: Path) -> Iterator[str]:
    """A CSV file's lines, read as they come (UTF-8, byte-order mark dropped);
    ProspectError, naming the line, for a file that cannot be read or is not UTF-8."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ProspectError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        for number, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ProspectError(
                    f"{path.name}:{number}: expected UTF-8 text, got byte "
                    f"0x{data[error.start]:02x} (save the file as 'CSV UTF-8' from your "
                    "spreadsheet or CRM)"
                ) from None
            yield line.removeprefix("\ufeff") if number == 1 else line


def count_lines(path: Path) -> int:
    """How many lines a file has (for a progress bar), read in blocks."""
    count = 0
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                count += block.count(b"\n")
    except OSError:
        return 0
    return count


def detect_delimiter(header_line: str) -> str:
    """The separator that splits the header line into the most cells."""
    counts = {d: len(next(csv.reader([header_line], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))


class ContactReader:
    """A CSV export read row by row: the header is checked when the reader is made
    (ProspectError for problems of the file as a whole), then iterating yields
    ``(line, prospect or None, errors)`` for each data row, in the order of the file.

    Memory stays bounded whatever the file's size: one row at a time, and a 64-bit hash
    of each address to report duplicates (with the line they first appeared on, for the
    first ``LINES_KEPT`` rows).
    """

    def __init__(
        self,
        lines: Iterable[str],
        file_name: str,
        *,
        required: Iterable[str] = (),
        sequence_id: str | None = None,
        mapping: Mapping[str, str | None] | None = None,
    ) -> None:
        self.file_name = file_name
        self.sequence_id = sequence_id
        self.total = 0
        source = iter(lines)
        skipped: list[str] = []
        header_line = None
        for line in source:
            line = line.removeprefix("\ufeff") if not skipped else line
            skipped.append(line)
            if line.strip():
                header_line = line
                break
        if header_line is None:
            raise ProspectError(
                f"{file_name}: the file is empty; expected a header line such as "
                "email,first_name,last_name,company then one line per prospect"
            )
        self._records = _records(itertools.chain(skipped, source), detect_delimiter(header_line))
        header_at, header = next(self._records)
        self.header = header
        self.mapping, self.preset = map_columns(header, mapping)
        self.names = [column.field or "" for column in self.mapping]
        wanted = list(required)
        _check_header(file_name, header_at, header, self.names, wanted, sequence_id)
        self.columns = [name for name in self.names if name]
        self.needed = [name for name in wanted if name in self.names]
        self._order = {
            _label(header, self.names, name): index for index, name in enumerate(self.names) if name
        }

    def __iter__(self) -> Iterator[tuple[int, Prospect | None, list[RowError]]]:
        seen: set[int] = set()
        first_lines: dict[int, int] = {}
        header, names = self.header, self.names
        for line, cells in self._records:
            self.total += 1
            prospect, errors = _prospect(line, cells, header, names)
            errors.extend(_row_errors(line, cells, header, names, self.needed, self.sequence_id))
            if len(errors) > 1:
                errors.sort(key=lambda error: self._order.get(error.column or "", -1))
            if prospect is not None:
                key = hash(prospect.email)
                if key in seen:
                    earlier = first_lines.get(key)
                    where = f"on line {earlier}" if earlier else "earlier in the file"
                    label = _label(header, names, "email")
                    message = f"duplicate: {prospect.email} is already {where}"
                    errors.append(RowError(line, label, message))
                else:
                    seen.add(key)
                    if len(first_lines) < LINES_KEPT:
                        first_lines[key] = line
            yield line, (None if errors else prospect), errors


def read_contacts(
    text: str,
    file_name: str,
    *,
    required: Iterable[str] = (),
    sequence_id: str | None = None,
    on_row: Callable[[int], None] | None = None,
    mapping: Mapping[str, str | None] | None = None,
) -> Contacts:
    """Check every row of a CSV text; ``required`` are the fields the templates need.

    Raises ProspectError for problems of the file as a whole; returns the row problems,
    in the order of the file (and of the columns within a row). ``on_row(n)`` is called
    every ``PROGRESS_EVERY`` rows, for a progress bar.
    """
    reader = ContactReader(
        io.StringIO(text, newline=""),
        file_name,
        required=required,
        sequence_id=sequence_id,
        mapping=mapping,
    )
    contacts = Contacts(file_name, reader.columns, mapping=reader.mapping, preset=reader.preset)
    for line, prospect, errors in reader:
        contacts.total = reader.total
        if on_row is not None and reader.total % PROGRESS_EVERY == 0:
            on_row(reader.total)
        if errors:
            contacts.errors.extend(errors)
        elif prospect is not None:  # pragma: no branch - a row without errors has a prospect
            contacts.rows.append(ContactRow(line, prospect))
    return contacts


def _records(lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells) for each non-blank record."""
    reader = csv.reader(lines, delimiter=delimiter)
    last = 0
    for cells in reader:
        start, last = last + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _check_header(
    file_name: str,
    line: int,
    header: list[str],
    columns: list[str],
    required: list[str],
    sequence_id: str | None,
) -> None:
    problems: list[str] = []
    if "email" not in columns:
        if any("@" in cell for cell in header):
            problems.append(
                f"{file_name}:{line}: expected a header line naming the columns "
                f"(email, first_name, ...), got a line of data: {','.join(header)[:80]!r}"
            )
        else:
            shown = ", ".join(repr(cell) for cell in header if cell.strip()) or "none"
            problems.append(
                f"{file_name}:{line}: no email column (expected a column named email, "
                f"E-mail, Email Address or Courriel), got columns {shown}"
            )
    seen: dict[str, str] = {}
    for cell, name in zip(header, columns, strict=True):
        if not name:
            continue
        if name in seen:
            problems.append(
                f"{file_name}:{line}: columns {seen[name]!r} and {cell!r} both give {name}; "
                "keep one of them"
            )
        seen.setdefault(name, cell)
    owner = f"the templates of {sequence_id}" if sequence_id else "the templates"
    if "email" in columns:  # else the header is not a header: the rest would be noise
        problems.extend(
            f"column {name!r} is used by {owner} but missing from {file_name}"
            for name in required
            if name not in columns
        )
    if problems:
        raise ProspectError("\n".join(problems))


def _label(header: list[str], columns: list[str], name: str) -> str:
    """How a column is named in messages: its field, and the file's header if different."""
    for cell, column in zip(header, columns, strict=True):
        if column == name:
            shown = cell.strip()
            return name if snake_case(shown) == name else f"{name} ({shown!r} in the file)"
    return name


def _row_errors(
    line: int,
    cells: list[str],
    header: list[str],
    columns: list[str],
    needed: list[str],
    sequence_id: str | None,
) -> list[RowError]:
    errors: list[RowError] = []
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        errors.append(
            RowError(
                line,
                None,
                f"expected at most {len(header)} cells as in the header, got {len(cells)} "
                "(quote the cells that contain the separator)",
            )
        )
    owner = f"the templates of {sequence_id}" if sequence_id else "the templates"
    for name in needed:
        index = columns.index(name)
        if index >= len(cells) or not cells[index].strip():
            errors.append(
                RowError(
                    line,
                    _label(header, columns, name),
                    f"expected a value ({owner} use it), got an empty cell",
                )
            )
    return errors


_FRAGMENT = re.compile(r"^column (?P<column>[a-z0-9_.]+): (?P<message>.*)$", re.DOTALL)


def _prospect(
    line: int, cells: list[str], header: list[str], columns: list[str]
) -> tuple[Prospect | None, list[RowError]]:
    row = {
        name: (cells[index] if index < len(cells) else "")
        for index, name in enumerate(columns)
        if name
    }
    try:
        return prospect_from_row(row), []
    except ProspectError as error:
        errors = []
        for fragment in re.split(r"; (?=column )", str(error)):
            match = _FRAGMENT.match(fragment)
            if match is None:
                errors.append(RowError(line, None, fragment))
            else:
                column = match["column"]
                errors.append(RowError(line, _label(header, columns, column), match["message"]))
        return None, errors
