#!/bin/sh
# The lab's services on every node, plain TCP so the reachability matrix can probe them:
# a web service on 80 (answers one HTTP line) and an SSH-like listener on 22 (a banner).
serve() {
  while :; do printf "$2" | nc -l -N "$1" >/dev/null 2>&1; done
}
serve 80 "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHello from $(hostname)\n" &
serve 22 "SSH-2.0-lab-listener\r\n" &
wait
