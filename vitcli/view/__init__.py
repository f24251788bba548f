"""The HTML explorer of `vitcli view`: the page template (inline CSS and JavaScript) and its writer."""
