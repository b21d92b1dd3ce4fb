package com.dslrmobile.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Matrix
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import java.io.File
import java.io.IOException

/** Photos are decoded to at most this many pixels (12 MP), enough for a phone photo, bounded in memory. */
const val MAX_PIXELS = 12_000_000L

/** Copies a picked photo into the app's cache, where [decodePhoto] reads it. */
fun copyToCache(context: Context, uri: Uri): File {
    val file = File(context.cacheDir, "photo.jpg")
    val stream = context.contentResolver.openInputStream(uri) ?: throw IOException("cannot open $uri")
    stream.use { input -> file.outputStream().use { input.copyTo(it) } }
    return file
}

/** ARGB_8888 bitmap of the photo, upright (EXIF orientation applied), subsampled to at most [MAX_PIXELS]. */
fun decodePhoto(path: String): Bitmap {
    val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
    BitmapFactory.decodeFile(path, bounds)
    if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
        throw IOException("$path is not an image Android can decode")
    }
    var sample = 1
    while (bounds.outWidth.toLong() / sample * (bounds.outHeight / sample) > MAX_PIXELS) sample *= 2
    val options = BitmapFactory.Options().apply {
        inSampleSize = sample
        inPreferredConfig = Bitmap.Config.ARGB_8888
    }
    val bitmap = BitmapFactory.decodeFile(path, options) ?: throw IOException("$path could not be decoded")
    val degrees = when (ExifInterface(path).getAttributeInt(ExifInterface.TAG_ORIENTATION,
        ExifInterface.ORIENTATION_NORMAL)) {
        ExifInterface.ORIENTATION_ROTATE_90 -> 90f
        ExifInterface.ORIENTATION_ROTATE_180 -> 180f
        ExifInterface.ORIENTATION_ROTATE_270 -> 270f
        else -> 0f
    }
    if (degrees == 0f) return bitmap
    val rotated = Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height,
        Matrix().apply { postRotate(degrees) }, true)
    bitmap.recycle()
    return rotated
}

fun Bitmap.argbPixels(): IntArray = IntArray(width * height).also { getPixels(it, 0, width, 0, 0, width, height) }
