#!/bin/sh
# test_browser.sh — not yet written
exit 77
