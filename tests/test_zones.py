"""Countries, regions and inferred time zones: checked against the libraries they name."""

from __future__ import annotations

from zoneinfo import available_timezones

import holidays as holiday_data
import pytest
from pydantic import ValidationError

from relance.prospect import Prospect
from relance.regions import check_country, check_region, countries
from relance.spec import HolidayCategory
from relance.zones import MAIN_ZONES, REGION_ZONES, ZoneSource, country_zone, infer_zone


def test_every_region_in_the_table_is_one_the_holidays_library_knows() -> None:
    for region in REGION_ZONES:
        country, _, code = region.partition("-")
        assert code in countries()[country], region


def test_every_zone_in_the_tables_exists() -> None:
    zones = available_timezones()
    assert set(REGION_ZONES.values()) <= zones
    assert set(MAIN_ZONES.values()) <= zones


def test_every_region_of_a_country_with_several_clocks_has_a_zone() -> None:
    """Where the country alone cannot say, the region must (the US Minor Outlying Islands
    span several zones with no one to pick: they fall through to the phone number)."""
    for country, subdivisions in countries().items():
        if not subdivisions or country_zone(country) is not None:
            continue
        for code in subdivisions:
            region = f"{country}-{code}"
            if region == "US-UM" or code.startswith("Zone "):
                continue
            zone, source = infer_zone(country, region, "")
            assert source is ZoneSource.REGION, region
            assert zone in available_timezones()


def test_the_holiday_categories_are_the_libraries() -> None:
    found = set()
    for country in countries():
        found |= set(holiday_data.country_holidays(country).supported_categories)
    assert {category.value for category in HolidayCategory} == found - {"workday"}


@pytest.mark.parametrize(
    ("fields", "zone", "source"),
    [
        ({"country": "US", "region": "CA"}, "America/Los_Angeles", ZoneSource.REGION),
        ({"region": "US-CA"}, "America/Los_Angeles", ZoneSource.REGION),
        ({"country": "AU", "region": "New South Wales"}, "Australia/Sydney", ZoneSource.REGION),
        ({"country": "ES", "region": "ES-CN"}, "Atlantic/Canary", ZoneSource.REGION),
        ({"country": "ES", "region": "ES-CT"}, "Europe/Madrid", ZoneSource.REGION),
        ({"country": "DE-BY"}, "Europe/Berlin", ZoneSource.COUNTRY),
        ({"country": "AR"}, "America/Argentina/Buenos_Aires", ZoneSource.COUNTRY),
        ({"country": "IL"}, "Asia/Jerusalem", ZoneSource.COUNTRY),
        ({"country": "US", "phone": "+1 415 555 0100"}, "America/Los_Angeles", ZoneSource.PHONE),
        ({"country": "ES", "phone": "928 123 456"}, "Atlantic/Canary", ZoneSource.PHONE),
        ({"country": "US", "phone": "+1 555"}, None, ZoneSource.SEQUENCE),
        ({"country": "US"}, None, ZoneSource.SEQUENCE),
        ({}, None, ZoneSource.SEQUENCE),
        ({"country": "US", "timezone": "Asia/Tokyo"}, "Asia/Tokyo", ZoneSource.GIVEN),
    ],
)
def test_the_zone_is_inferred_in_order(
    fields: dict[str, str], zone: str | None, source: ZoneSource
) -> None:
    person = Prospect(email="a@example.com", **fields)
    assert (person.timezone, person.timezone_source) == (zone, source)


def test_a_country_written_with_its_region_is_both() -> None:
    person = Prospect(email="a@example.com", country="de-by")
    assert (person.country, person.region) == ("DE", "DE-BY")


def test_regions_are_checked_with_a_suggestion() -> None:
    assert check_region("by", "DE") == ("DE", "DE-BY")
    assert check_region("Bayern", "DE") == ("DE", "DE-BY")
    with pytest.raises(ValueError, match=r"got 'Califrnia' \(did you mean 'US-CA'"):
        check_region("Califrnia", "US")
    with pytest.raises(
        ValueError, match=r"expected a region of FR, got 'DE-BY' \(a region of DE\)"
    ):
        check_region("DE-BY", "FR")
    with pytest.raises(ValueError, match="expected no region for IL"):
        check_region("TA", "IL")
    with pytest.raises(ValueError, match='with its country such as "US-CA"'):
        check_region("CA", None)


def test_countries_are_checked_with_a_suggestion() -> None:
    assert check_country(" fr ") == "FR"
    with pytest.raises(ValueError, match=r"got 'Australia' \(did you mean 'AU'\?\)"):
        check_country("Australia")
    with pytest.raises(ValueError, match=r"got 'XX'$"):
        check_country("XX")


def test_a_value_too_small_to_compute_with_is_refused() -> None:
    with pytest.raises(ValidationError, match="too small to compute with"):
        Prospect(email="a@example.com", deal_value=1e-320)
    assert Prospect(email="a@example.com", deal_value=1e-300).deal_value == 1e-300
