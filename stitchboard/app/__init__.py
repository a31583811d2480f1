"""The application shell: the ``stitchboard`` command line, the runner that assembles a flow with its
inputs and sinks, and the demo. The only package that may import everything else.
"""
