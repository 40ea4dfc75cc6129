import os

# Rich sizes its consoles when the CLI module is imported: give the tests a wide terminal.
os.environ["COLUMNS"] = "200"
