package com.dslrmobile.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Rect
import android.graphics.RectF
import android.util.AttributeSet
import android.view.MotionEvent
import android.view.View

/** The enhanced photo left of a draggable divider, the original right of it, fitted into the view. */
class BeforeAfterView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private var before: Bitmap? = null
    private var after: Bitmap? = null
    private var split = 0.5f
    private val divider = Paint().apply {
        color = Color.WHITE
        strokeWidth = 4f
    }
    private val bitmapPaint = Paint(Paint.FILTER_BITMAP_FLAG)

    fun setImages(before: Bitmap, after: Bitmap?) {
        this.before = before
        this.after = after
        invalidate()
    }

    private fun fitted(b: Bitmap): RectF {
        val scale = minOf(width / b.width.toFloat(), height / b.height.toFloat())
        val w = b.width * scale
        val h = b.height * scale
        return RectF((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val original = before ?: return
        val dst = fitted(original)
        val enhanced = after
        if (enhanced == null) {
            canvas.drawBitmap(original, null, dst, bitmapPaint)
            return
        }
        val x = dst.left + split * dst.width()
        val srcX = (split * original.width).toInt()
        canvas.drawBitmap(enhanced, Rect(0, 0, srcX, enhanced.height), RectF(dst.left, dst.top, x, dst.bottom), bitmapPaint)
        canvas.drawBitmap(original, Rect(srcX, 0, original.width, original.height), RectF(x, dst.top, dst.right, dst.bottom), bitmapPaint)
        canvas.drawLine(x, dst.top, x, dst.bottom, divider)
    }

    override fun onTouchEvent(event: MotionEvent): Boolean {
        val original = before ?: return false
        val dst = fitted(original)
        if (event.action == MotionEvent.ACTION_DOWN || event.action == MotionEvent.ACTION_MOVE) {
            split = ((event.x - dst.left) / dst.width()).coerceIn(0f, 1f)
            invalidate()
            return true
        }
        if (event.action == MotionEvent.ACTION_UP) performClick()
        return super.onTouchEvent(event)
    }

    override fun performClick(): Boolean = super.performClick()
}
