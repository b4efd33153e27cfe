#!/bin/sh
# test_web_units.sh — not yet written
exit 77
