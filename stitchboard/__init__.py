"""Stitchboard: omnichannel contact-centre analytics as a stream-processing job."""

__version__ = "0.1.0"
