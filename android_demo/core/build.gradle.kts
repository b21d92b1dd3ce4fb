// The platform-free core: plain Java, no Android imports. Tested on the JVM (./gradlew :core:test, or
// ./core/jvm-test.sh with the JDK alone), against fixtures the Python tests write in ../tests/fixtures.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

dependencies {
    api(libs.gson)
    testImplementation(libs.junit)
}

tasks.test {
    systemProperty("dslr.fixtures", rootProject.file("../tests/fixtures").absolutePath)
}
