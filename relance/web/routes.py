"""Every router of the service, in one list (each lives in its own module)."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from relance.web import bookings, health, inbound, sdr, sendgrid_events, unsubscribe

    return [
        bookings.router,
        health.router,
        inbound.router,
        sdr.router,
        sendgrid_events.router,
        unsubscribe.router,
    ]
