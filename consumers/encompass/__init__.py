"""Operation Encompass deadlines: school calendars, the policy, the deadline monitor and its escalations."""
