#!/bin/sh
echo "about to hang"
sleep 31.4159
echo "never printed"
