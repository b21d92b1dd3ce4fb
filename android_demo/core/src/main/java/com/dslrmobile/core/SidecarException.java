package com.dslrmobile.core;

/** A sidecar JSON that cannot drive the app: unreadable, or missing or contradicting a field (named). */
public final class SidecarException extends Exception {
    private static final long serialVersionUID = 1L;

    public SidecarException(String message) {
        super(message);
    }
}
