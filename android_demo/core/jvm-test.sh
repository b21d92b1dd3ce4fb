#!/usr/bin/env bash
# Compile and run the platform-free core's JUnit tests with the JDK alone (no Gradle, no Android SDK).
# Needs javac (JDK 17) and Debian's junit4 and libgoogle-gson-java jars; installs them with apt-get if missing
# and allowed (root). Gradle users run the same tests with: ./gradlew :core:test
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jars=/usr/share/java
need=("$jars/junit4.jar" "$jars/hamcrest-core.jar" "$jars/gson.jar")
if ! command -v javac >/dev/null || ! ls "${need[@]}" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing JDK/JUnit/Gson from Debian's packages" >&2
        apt-get install -y -q default-jdk-headless junit4 libgoogle-gson-java >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q default-jdk-headless junit4 libgoogle-gson-java >/dev/null; }
    else
        echo "error: the core's tests need javac and ${need[*]} (apt-get install default-jdk-headless junit4 libgoogle-gson-java)" >&2
        exit 1
    fi
fi
cp="$jars/gson.jar:$jars/junit4.jar:$jars/hamcrest-core.jar"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
javac -Xlint:all -Werror -cp "$cp" -d "$out" $(find "$here/src/main/java" "$here/src/test/java" -name '*.java')
tests=$(cd "$here/src/test/java" && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
java -Ddslr.fixtures="$here/../../tests/fixtures" -cp "$out:$cp" org.junit.runner.JUnitCore $tests
