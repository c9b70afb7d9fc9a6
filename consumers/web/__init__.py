"""What every server-rendered page shares (sessions, sign-in, CSRF, headers), with the templates and static files."""
