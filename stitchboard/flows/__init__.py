"""Bytewax hosting: the dataflow's wiring, its input sources and the steps that host the domain rules.

May import the domain package and Bytewax (with its Kafka connector); never ``stitchboard.sinks``
(sinks are handed in) nor ``stitchboard.app``.
"""
