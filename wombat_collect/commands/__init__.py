"""The commands' work, below cli.py: cli parses the options and makes one call into a module here.

Flow: cli -> commands -> jobs, quotes, gaps, ops -> collectors/* and db/*. Modules: common (what
every command shares: App, collectors, database, exit), collect (symbols, prices, quotes), gaps,
reports (status, check, schedule), database (db init, db hand-over).
"""
