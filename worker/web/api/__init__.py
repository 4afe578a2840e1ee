"""The operator API, one router per noun: editions, subscribers, bounces. ``worker.web.operator``
gathers them under ``/api`` with the comparisons and the test send."""
