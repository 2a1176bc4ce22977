"""Pascal VOC annotation XML: reading and writing.

Boxes here are VOC pixel boxes: 1-based, inclusive, as written in the XML (the file boundary is the only
place such boxes exist; see ../shared/DESIGN.md). `difficult` and `truncated` are kept as written, an
absent tag meaning 0.
"""
import dataclasses
import xml.etree.ElementTree as ET

from common.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class VOCObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: int = 0
    truncated: int = 0


@dataclasses.dataclass(frozen=True)
class VOCAnnotation:
    filename: str  # the image file name as written in <filename> (may be empty)
    width: int
    height: int
    depth: int
    objects: tuple  # of VOCObject


def _text(node, tag, path, required=True):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise DatasetError(path, f"missing <{tag}>")
        return None
    return child.text.strip()


def _number(node, tag, path, cast=float):
    text = _text(node, tag, path)
    try:
        return cast(float(text)) if cast is int else cast(text)
    except ValueError:
        raise DatasetError(path, f"<{tag}> is not a number: {text!r}") from None


def _flag(node, tag, path):
    text = _text(node, tag, path, required=False)
    if text is None:
        return 0
    try:
        return int(float(text))
    except ValueError:
        raise DatasetError(path, f"<{tag}> is not 0 or 1: {text!r}") from None


def read_voc_annotation(path):
    """Parses one VOC XML file into a VOCAnnotation. Raises DatasetError naming the file on any defect.

    Only the syntax is checked here (well-formed XML, numbers where numbers belong); whether boxes fit
    the image and classes are known is the converter's check, which knows the image and the label map.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetError(path, f"malformed XML ({err})") from None
    except OSError as err:
        raise DatasetError(path, f"cannot read ({err.strerror or err})") from None
    if root.tag != "annotation":
        raise DatasetError(path, f"root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None:
        raise DatasetError(path, "missing <size>")
    width = _number(size, "width", path, int)
    height = _number(size, "height", path, int)
    depth_text = _text(size, "depth", path, required=False)
    depth = int(float(depth_text)) if depth_text else 3
    objects = []
    for obj in root.findall("object"):
        name = _text(obj, "name", path)
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(path, f"object {name!r} has no <bndbox>")
        objects.append(VOCObject(
            name=name,
            xmin=_number(box, "xmin", path), ymin=_number(box, "ymin", path),
            xmax=_number(box, "xmax", path), ymax=_number(box, "ymax", path),
            difficult=_flag(obj, "difficult", path), truncated=_flag(obj, "truncated", path)))
    filename = _text(root, "filename", path, required=False) or ""
    return VOCAnnotation(filename=filename, width=width, height=height, depth=depth, objects=tuple(objects))


def _fmt(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def voc_annotation_xml(annotation, folder="VOC"):
    """Serialises a VOCAnnotation as VOC XML text (used by the synthetic dataset and the tests)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = annotation.filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(annotation.width)
    ET.SubElement(size, "height").text = str(annotation.height)
    ET.SubElement(size, "depth").text = str(annotation.depth)
    ET.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        box = ET.SubElement(node, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            ET.SubElement(box, tag).text = _fmt(getattr(obj, tag))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
