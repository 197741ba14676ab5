#!/bin/sh
# Fails, printing WHAT and the answer, when a genquery that guards a dependency rule answered
# anything. Usage: empty_query_test.sh QUERY_OUTPUT WHAT
if [ -s "$1" ]; then
  echo "$2:"
  cat "$1"
  exit 1
fi
echo "none: $2"
