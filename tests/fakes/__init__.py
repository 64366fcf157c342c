"""Fakes of the outside systems that Relance talks to: real servers, on 127.0.0.1 only."""
