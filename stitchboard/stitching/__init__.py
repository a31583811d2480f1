"""The stitcher: a conversation's events, stored packed, rebuilt into its summary, diffed into deltas.

Layered bottom-up, nothing importing back up: ``instants`` (time as integer microseconds),
``summary`` (stored events → ``stitchboard.conversation.Conversation``), ``emitted`` (the last
contributions a conversation published, and the deltas from them), ``store`` (one conversation's
packed state: de-duplication, versions, the complete record winning), ``stitch`` (a delivery's
events applied to a state: the summary and deltas to publish), ``row`` (the conversations-table
row of a summary). The package's ``__init__`` imports nothing, so importing any of its modules
pulls in only what that module needs.
"""
